// /admin/stats series and /admin/usage days → what the charts draw.

import type { SeriesPoint, StatsGroup, UsageRow, Window } from "./api";
import { formatClock, parseTime } from "./format";
import { costPerDay, dayStart } from "./report";

export interface ChartPoint {
  t: number;
  values: Record<string, number | null>;
}

export function chartPoints(series: SeriesPoint[]): ChartPoint[] {
  return series.map((p) => ({
    t: parseTime(p.start) ?? 0,
    values: {
      ok: p.requests - p.errors,
      pool_errors: p.pool_errors,
      client_errors: p.client_errors,
      error_rate: poolErrorRate(p),
      input: p.input_tokens,
      output: p.output_tokens,
      cache_read: p.cache_read_tokens,
      cache_write: p.cache_creation_tokens,
      p50: p.p50_latency_ms,
      p95: p.p95_latency_ms,
      ttfb_p50: p.p50_ttfb_ms,
      ttfb_p95: p.p95_ttfb_ms,
    },
  }));
}

/** Requests in the last hour, day and week, as far as they are known yet (a week is asked for
 * only when the day had none). */
export interface WindowCounts {
  hour: number;
  day: number;
  week?: number;
}

/**
 * The window the overview opens with, from where the traffic lies: the last hour (in minutes)
 * when all of the day's requests are in it, or when there are none at all (a new pool); the
 * day when it has older ones; the week when only it has any. Undefined: the week must be
 * counted first (`counts.week` is missing and the day had none).
 */
export function autoWindow(counts: WindowCounts): Window | undefined {
  if (counts.day > 0) return counts.hour >= counts.day ? "1h" : "24h";
  if (counts.week === undefined) return undefined;
  return counts.week > 0 ? "7d" : "1h";
}

/** One point a day from `from` to `to`, valued at the day's cost over all groups (0 when none):
 * the chart of a `period=day` report. */
export function costPoints(rows: UsageRow[], from: string, to: string): ChartPoint[] {
  return costPerDay(rows, from, to).map(({ day, cost }) => ({ t: dayStart(day) ?? 0, values: { cost } }));
}

/** The share of requests the pool failed (null without requests): the pool's health. The
 * client's own mistakes (bad requests, refused keys) are left out: they say nothing of it. */
export function poolErrorRate(group: Pick<StatsGroup, "requests" | "pool_errors">): number | null {
  return group.requests > 0 ? group.pool_errors / group.requests : null;
}

/**
 * A round upper bound for an axis: 1, 2, 2.5, 5 or 10 times a power of ten. For counts
 * (`integer`) the half-way gridline must be a whole number too: 2, 4, 6, 8, 10 below ten,
 * then 1, 2, 4, 5 or 10 times a power of ten.
 */
export function niceMax(value: number, integer = false): number {
  if (!(value > 0)) return integer ? 2 : 1;
  if (integer && value <= 10) return Math.max(2, 2 * Math.ceil(value / 2));
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of integer ? [1, 2, 4, 5, 10] : [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

/** The window of a chart of whole days (one point a day), as `tickLabel` and `pointLabel` know it. */
export const DAYS = "days";

/** Tick label for a bucket start, by window: minutes for an hour, hours for a day, days for a
 * week, dates for a chart of days. */
export function tickLabel(t: number, window: string): string {
  const d = new Date(t);
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  if (window === DAYS) return d.toLocaleDateString("en-US", { month: "short", day: "numeric" });
  if (window === "7d") return d.toLocaleDateString("en-US", { weekday: "short", day: "numeric" });
  return `${hh}:${mm}`;
}

/** Heading of a point's tooltip: the bucket's time, or its date in a chart of days. */
export function pointLabel(t: number, window: string): string {
  if (window === DAYS) return new Date(t).toLocaleDateString("en-US", { weekday: "short", month: "short", day: "numeric" });
  return formatClock(t, t);
}
