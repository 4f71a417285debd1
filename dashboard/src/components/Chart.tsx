// Time-series charts as plain SVG drawn in real pixels: stacked bars or lines, a hover guide
// with a tooltip, and no library (a charting package would weigh more than the whole app).

import { useMemo, useState } from "react";
import { useWidth } from "../lib/hooks";
import type { ChartPoint } from "../lib/series";
import { niceMax, pointLabel, tickLabel } from "../lib/series";
import { cx } from "./ui";

export interface SeriesDef {
  key: string;
  label: string;
  fill: string; // Tailwind fill-* class (bars)
  stroke: string; // Tailwind stroke-* class (lines)
  dot: string; // Tailwind bg-* class (legend)
}

const MARGIN = { left: 46, right: 10, top: 10, bottom: 22 };

export function TimeChart({ title, summary, points, series, kind, format, window, height = 150, max, minTop = 0, emptyText = "No requests in this window" }: {
  title: string;
  summary?: React.ReactNode;
  points: ChartPoint[];
  series: SeriesDef[];
  kind: "bars" | "lines";
  format: (value: number) => string;
  window: string;
  height?: number;
  max?: number;
  /** Smallest axis top; set for counts, whose gridlines must fall on whole numbers. */
  minTop?: number;
  /** Said over the plot when there is nothing to draw. */
  emptyText?: string;
}) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const [hover, setHover] = useState<number | null>(null);
  const plotW = Math.max(0, width - MARGIN.left - MARGIN.right);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const n = points.length;

  const top = useMemo(() => {
    let peak = 0;
    for (const p of points) {
      if (kind === "bars") {
        peak = Math.max(peak, series.reduce((sum, s) => sum + (p.values[s.key] ?? 0), 0));
      } else {
        for (const s of series) peak = Math.max(peak, p.values[s.key] ?? 0);
      }
    }
    return max ?? niceMax(Math.max(peak, minTop), minTop > 0);
  }, [points, series, kind, max, minTop]);

  // Bars are empty when all are zero; lines when no bucket has a value at all (0% is a value).
  const empty = points.every((p) => series.every((s) =>
    kind === "bars" ? !p.values[s.key] : p.values[s.key] === null || p.values[s.key] === undefined));
  const step = n > 0 ? plotW / n : 0;
  const y = (v: number) => MARGIN.top + plotH - (v / top) * plotH;
  const xCenter = (i: number) => MARGIN.left + step * i + step / 2;
  const tickEvery = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(plotW / 90))));

  const onMove = (e: React.MouseEvent<SVGSVGElement>) => {
    const box = e.currentTarget.getBoundingClientRect();
    const i = Math.floor((e.clientX - box.left - MARGIN.left) / (step || 1));
    setHover(i >= 0 && i < n ? i : null);
  };

  const hovered = hover !== null ? points[hover] : null;

  return (
    <div>
      <ChartHeader title={title} series={series} summary={summary} />
      <div ref={ref} className="relative" style={{ height }}>
        {width > 0 && (
          <svg width={width} height={height} onMouseMove={onMove} onMouseLeave={() => setHover(null)} role="img" aria-label={title} className="block">
            {[0, 0.5, 1].map((f) => (
              <g key={f}>
                <line x1={MARGIN.left} x2={width - MARGIN.right} y1={y(top * f)} y2={y(top * f)}
                  className={f === 0 ? "stroke-zinc-300 dark:stroke-zinc-700" : "stroke-zinc-200 dark:stroke-zinc-800"}
                  strokeDasharray={f === 0 ? undefined : "3 3"} />
                <text x={MARGIN.left - 6} y={y(top * f)} dy="0.32em" textAnchor="end" className="fill-zinc-400 text-[10px] tabular dark:fill-zinc-500">
                  {format(top * f)}
                </text>
              </g>
            ))}
            {points.map((p, i) => i % tickEvery === 0 && (
              <text key={p.t} x={xCenter(i)} y={height - 6} textAnchor="middle" className="fill-zinc-400 text-[10px] tabular dark:fill-zinc-500">
                {tickLabel(p.t, window)}
              </text>
            ))}
            {hover !== null && (
              <rect x={MARGIN.left + step * hover} y={MARGIN.top} width={step} height={plotH} className="fill-zinc-400/15 dark:fill-zinc-500/15" />
            )}
            {kind === "bars" ? (
              <Bars points={points} series={series} y={y} step={step} />
            ) : (
              <Lines points={points} series={series} y={y} x={xCenter} />
            )}
          </svg>
        )}
        {empty && width > 0 && (
          <div className="pointer-events-none absolute inset-0 flex items-center justify-center pl-10 text-xs text-zinc-400 dark:text-zinc-500">
            {emptyText}
          </div>
        )}
        {hovered && hover !== null && (
          <div
            className="pointer-events-none absolute top-0 z-10 min-w-36 rounded-lg bg-white/95 px-3 py-2 text-xs shadow-lg ring-1 ring-zinc-200 dark:bg-zinc-800/95 dark:ring-zinc-700"
            style={{
              left: Math.min(Math.max(0, xCenter(hover) + 12), Math.max(0, width - 160)),
            }}
          >
            <p className="mb-1 font-medium text-zinc-700 dark:text-zinc-200">{pointLabel(hovered.t, window)}</p>
            {series.map((s) => (
              <p key={s.key} className="flex items-center justify-between gap-4 text-zinc-600 dark:text-zinc-300">
                <span className="inline-flex items-center gap-1.5"><span className={cx("size-2 rounded-sm", s.dot)} />{s.label}</span>
                <span className="tabular font-medium">{hovered.values[s.key] == null ? "—" : format(hovered.values[s.key] as number)}</span>
              </p>
            ))}
          </div>
        )}
      </div>
    </div>
  );
}

function ChartHeader({ title, series, summary }: { title: string; series: SeriesDef[]; summary?: React.ReactNode }) {
  return (
    <div className="mb-2 flex flex-wrap items-baseline justify-between gap-x-4 gap-y-1">
      <h3 className="text-sm font-semibold text-zinc-800 dark:text-zinc-100">{title}</h3>
      <div className="flex flex-wrap items-center gap-3 text-xs text-zinc-500 dark:text-zinc-400">
        {series.map((s) => (
          <span key={s.key} className="inline-flex items-center gap-1.5">
            <span className={cx("size-2 rounded-sm", s.dot)} />
            {s.label}
          </span>
        ))}
        {summary}
      </div>
    </div>
  );
}

function Bars({ points, series, y, step }: { points: ChartPoint[]; series: SeriesDef[]; y: (v: number) => number; step: number }) {
  const gap = step > 6 ? Math.min(3, step * 0.25) : step > 2 ? 1 : 0;
  return (
    <g>
      {points.map((p, i) => {
        let base = 0;
        return series.map((s) => {
          const v = p.values[s.key] ?? 0;
          if (v <= 0) return null;
          const y0 = y(base);
          base += v;
          const y1 = y(base);
          return (
            <rect key={`${p.t}-${s.key}`} x={MARGIN.left + step * i + gap / 2} y={y1} width={Math.max(0.5, step - gap)}
              height={Math.max(1, y0 - y1)} className={s.fill} rx={step > 8 ? 1.5 : 0} />
          );
        });
      })}
    </g>
  );
}

function Lines({ points, series, y, x }: { points: ChartPoint[]; series: SeriesDef[]; y: (v: number) => number; x: (i: number) => number }) {
  return (
    <g>
      {series.map((s) => {
        let d = "";
        let pen = false;
        const dots: [number, number][] = [];
        points.forEach((p, i) => {
          const v = p.values[s.key];
          if (v === null || v === undefined) {
            pen = false;
            return;
          }
          d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
          dots.push([x(i), y(v)]);
          pen = true;
        });
        return (
          <g key={s.key}>
            <path d={d} fill="none" strokeWidth={1.8} strokeLinejoin="round" strokeLinecap="round" className={s.stroke} />
            {/* Lone points (neighbours empty) would be invisible as a path: draw them as dots. */}
            {dots.length < 40 && dots.map(([cx, cy]) => (
              <circle key={`${cx}`} cx={cx} cy={cy} r={2} className={s.fill} />
            ))}
          </g>
        );
      })}
    </g>
  );
}
