import { describe, expect, it } from "vitest";
import type { SeriesPoint } from "../src/lib/api";
import { hrefOf, pageOf } from "../src/lib/router";
import { autoWindow, chartPoints, costPoints, DAYS, niceMax, pointLabel, poolErrorRate, tickLabel } from "../src/lib/series";
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
  const point = (requests: number, pool_errors: number, client_errors = 0): SeriesPoint => ({
    start: "2026-03-01T12:00:00.000Z", requests, errors: pool_errors + client_errors, pool_errors, client_errors,
    input_tokens: 10, output_tokens: 5, cache_read_tokens: 2, cache_creation_tokens: 1, cost_usd: 0.01,
    p50_latency_ms: requests ? 100 : null, p95_latency_ms: requests ? 200 : null,
    p50_ttfb_ms: requests ? 40 : null, p95_ttfb_ms: requests ? 90 : null,
  });

  it("splits requests into succeeded, failed by the pool and the client's errors", () => {
    const [busy, idle] = chartPoints([point(10, 2, 3), point(0, 0)]);
    expect(busy.values).toMatchObject({ ok: 5, pool_errors: 2, client_errors: 3, p50: 100, cache_write: 1, ttfb_p50: 40, ttfb_p95: 90 });
    expect(idle.values.p50).toBeNull();
    expect(idle.values.ttfb_p50).toBeNull();
    expect(busy.t).toBe(Date.parse("2026-03-01T12:00:00Z"));
  });

  it("rates errors by the pool's failures alone: the client's own leave it at zero", () => {
    const [busy, clients, idle] = chartPoints([point(10, 2, 3), point(4, 0, 4), point(0, 0)]);
    expect(busy.values.error_rate).toBe(0.2);
    expect(clients.values.error_rate).toBe(0);
    expect(idle.values.error_rate).toBeNull();
    expect(poolErrorRate({ requests: 4, pool_errors: 1 })).toBe(0.25);
    expect(poolErrorRate({ requests: 0, pool_errors: 0 })).toBeNull();
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
