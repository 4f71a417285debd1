import { describe, expect, it } from "vitest";
import type { SeriesPoint } from "../src/lib/api";
import { hrefOf, pageOf } from "../src/lib/router";
import { autoWindow, chartPoints, costPoints, DAYS, errorRate, hasTtfbSeries, niceMax, pointLabel, tickLabel, ttfbByModel } from "../src/lib/series";
import { snippets } from "../src/lib/snippets";

describe("snippets", () => {
  it("configure Claude Code and the OpenAI SDK for this server", () => {
    const [claude, openai, curl] = snippets("http://10.0.0.5:8080/", "kst_abc");
    expect(claude.code).toContain("export ANTHROPIC_BASE_URL=http://10.0.0.5:8080\n");
    expect(claude.code).toContain("export ANTHROPIC_API_KEY=kst_abc");
    expect(openai.code).toContain('base_url="http://10.0.0.5:8080/v1"');
    expect(openai.code).toContain('api_key="kst_abc"');
    expect(curl.code).toContain("http://10.0.0.5:8080/v1/messages");
  });
});

describe("routes", () => {
  it("maps locations to pages and back", () => {
    expect(pageOf("/app/")).toBe("overview");
    expect(pageOf("/app/logs")).toBe("logs");
    expect(pageOf("/app/accounts/3")).toBe("accounts");
    expect(pageOf("/app/nope")).toBe("overview");
    expect(hrefOf("overview")).toBe("/app/");
    expect(hrefOf("keys")).toBe("/app/keys");
    expect(pageOf("/app/usage")).toBe("usage");
    expect(hrefOf("usage")).toBe("/app/usage");
  });
});

describe("chart data", () => {
  const point = (requests: number, errors: number): SeriesPoint => ({
    start: "2026-03-01T12:00:00.000Z", requests, errors, input_tokens: 10, output_tokens: 5,
    cache_read_tokens: 2, cache_creation_tokens: 1, cost_usd: 0.01, p50_latency_ms: requests ? 100 : null,
    p95_latency_ms: requests ? 200 : null,
  });

  it("splits requests into succeeded and failed and computes the error rate", () => {
    const [busy, idle] = chartPoints([point(10, 2), point(0, 0)]);
    expect(busy.values).toMatchObject({ ok: 8, errors: 2, error_rate: 0.2, p50: 100, cache_write: 1 });
    expect(idle.values.error_rate).toBeNull();
    expect(idle.values.p50).toBeNull();
    expect(busy.t).toBe(Date.parse("2026-03-01T12:00:00Z"));
  });

  it("rounds axis tops up", () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(1)).toBe(1);
    expect(niceMax(3)).toBe(5);
    expect(niceMax(17)).toBe(20);
    expect(niceMax(230)).toBe(250);
    expect(niceMax(0.07)).toBeCloseTo(0.1);
  });

  it("keeps the middle gridline of a count axis whole", () => {
    expect(niceMax(1, true)).toBe(2);
    expect(niceMax(3, true)).toBe(4);
    expect(niceMax(9, true)).toBe(10);
    expect(niceMax(23, true)).toBe(40);
    expect(niceMax(230, true)).toBe(400);
    expect(niceMax(4_700, true)).toBe(5_000);
    for (const v of [1, 7, 13, 26, 99, 120, 333, 6_100]) expect(Number.isInteger(niceMax(v, true) / 2)).toBe(true);
  });

  it("turns a report by day into one point a day, gaps at zero", () => {
    const row = (period: string, cost_usd: number) => ({
      period, requests: 1, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_creation_tokens: 0, unpriced: 0, cost_usd,
    });
    const points = costPoints([row("2026-11-30", 0.25), row("2026-12-02", 1), row("2026-12-02", 0.5)], "2026-11-30", "2026-12-02");
    expect(points.map((p) => p.values.cost)).toEqual([0.25, 0, 1.5]);
    expect(points.map((p) => p.t)).toEqual([new Date(2026, 10, 30).getTime(), new Date(2026, 11, 1).getTime(), new Date(2026, 11, 2).getTime()]);
    expect(tickLabel(points[2].t, DAYS)).toBe("Dec 2");
    expect(pointLabel(points[2].t, DAYS)).toBe("Wed, Dec 2");
  });

  it("computes the error rate of a window", () => {
    expect(errorRate({ totals: { requests: 4, errors: 1 } as never })).toBe(0.25);
    expect(errorRate({ totals: { requests: 0, errors: 0 } as never })).toBeNull();
  });
});

describe("the overview's window", () => {
  it("is the hour when the day's traffic is all in it, or when there is none at all", () => {
    expect(autoWindow({ hour: 3, day: 3 })).toBe("1h");
    expect(autoWindow({ hour: 3, day: 5 })).toBe("24h");
    expect(autoWindow({ hour: 0, day: 5 })).toBe("24h");
    expect(autoWindow({ hour: 0, day: 0 })).toBeUndefined(); // the week decides
    expect(autoWindow({ hour: 0, day: 0, week: 4 })).toBe("7d");
    expect(autoWindow({ hour: 0, day: 0, week: 0 })).toBe("1h");
  });
});

describe("time to first byte", () => {
  const group = (model: string | null, p50: number | null, p95: number | null) => ({
    model, requests: 1, errors: 0, errors_by_type: {}, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0,
    cache_creation_tokens: 0, cost_usd: 0, p50_latency_ms: 1, p95_latency_ms: 1, p50_ttfb_ms: p50, p95_ttfb_ms: p95,
  });
  const point = (extra: object = {}): SeriesPoint => ({
    start: "2026-03-01T12:00:00.000Z", requests: 1, errors: 0, input_tokens: 0, output_tokens: 0,
    cache_read_tokens: 0, cache_creation_tokens: 0, cost_usd: 0, p50_latency_ms: 5, p95_latency_ms: 9, ...extra,
  });

  it("is charted over time when the series carries it", () => {
    expect(hasTtfbSeries([point()])).toBe(false);
    expect(hasTtfbSeries([])).toBe(false);
    const series = [point({ p50_ttfb_ms: 2, p95_ttfb_ms: 4 }), point({ p50_ttfb_ms: null, p95_ttfb_ms: null })];
    expect(hasTtfbSeries(series)).toBe(true);
    expect(chartPoints(series).map((p) => [p.values.ttfb_p50, p.values.ttfb_p95])).toEqual([[2, 4], [null, null]]);
    expect(chartPoints([point()])[0].values.ttfb_p50).toBeNull();
  });

  it("else per model, busiest first, those without one left out", () => {
    const rows = ttfbByModel([group("a", 3, 5), group(null, 1, 2), group("b", null, null), group("c", 7, 9)], 2);
    expect(rows).toEqual([{ model: "a", p50: 3, p95: 5 }, { model: "unknown model", p50: 1, p95: 2 }]);
  });
});
