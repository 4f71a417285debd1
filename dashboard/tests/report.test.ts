import { describe, expect, it } from "vitest";
import type { UsageRow } from "../src/lib/api";
import {
  addDays, byPeriod, costPerDay, dayStart, daysFrom, defaultRange, groupName, groupOf, localDay, periodLabel, rangeLabel, sumUsage,
} from "../src/lib/report";

const row = (period: string, over: Partial<UsageRow> = {}): UsageRow => ({
  period, requests: 1, input_tokens: 10, output_tokens: 5, cache_read_tokens: 0, cache_creation_tokens: 0,
  unpriced: 0, cost_usd: 0.01, ...over,
});

describe("days", () => {
  it("are the browser's calendar days", () => {
    expect(localDay(new Date(2026, 11, 4, 23, 59).getTime())).toBe("2026-12-04");
    expect(dayStart("2026-12-04")).toBe(new Date(2026, 11, 4).getTime());
    expect(dayStart("2026-12")).toBe(new Date(2026, 11, 1).getTime());
    expect(dayStart("2026-02-30")).toBeNull();
    expect(dayStart("soon")).toBeNull();
  });

  it("move by calendar days and list a range, both ends included", () => {
    expect(addDays("2026-12-04", -29)).toBe("2026-11-05");
    expect(addDays("2026-12-31", 1)).toBe("2027-01-01");
    expect(addDays("2026-03-29", 1)).toBe("2026-03-30"); // over a clock change in many zones
    expect(daysFrom("2026-02-27", "2026-03-02")).toEqual(["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]);
    expect(daysFrom("2026-03-02", "2026-03-01")).toEqual([]);
  });

  it("default to this month by day, or thirteen months by month", () => {
    const now = new Date(2026, 11, 4, 12).getTime();
    expect(defaultRange("day", now)).toEqual({ from: "2026-12-01", to: "2026-12-04" });
    expect(defaultRange("month", now)).toEqual({ from: "2025-12", to: "2026-12" });
  });

  it("read as dates", () => {
    expect(periodLabel("2026-12-04")).toBe("Fri, Dec 4, 2026");
    expect(periodLabel("2026-12")).toBe("December 2026");
    expect(periodLabel("whenever")).toBe("whenever");
    expect(rangeLabel("2026-12-01", "2026-12-04", "day")).toBe("Dec 1 – Dec 4");
    expect(rangeLabel("2025-12-30", "2026-01-02", "day")).toBe("Dec 30, 2025 – Jan 2, 2026");
    expect(rangeLabel("2026-12-04", "2026-12-04", "day")).toBe("Dec 4");
    expect(rangeLabel("2025-12-01", "2026-12-31", "month")).toBe("Dec 2025 – Dec 2026");
  });
});

describe("usage rows", () => {
  it("sum to totals", () => {
    expect(sumUsage([row("2026-12-01", { unpriced: 1 }), row("2026-12-02", { cost_usd: 0.5 })])).toEqual({
      requests: 2, input_tokens: 20, output_tokens: 10, cache_read_tokens: 0, cache_creation_tokens: 0, unpriced: 1, cost_usd: 0.51,
    });
    expect(sumUsage([]).requests).toBe(0);
  });

  it("come together per period, newest first, the costliest group first", () => {
    const groups = byPeriod([
      row("2026-12-01", { key: 1, cost_usd: 0.1 }),
      row("2026-12-01", { key: 2, cost_usd: 0.3 }),
      row("2026-12-03", { key: 1, cost_usd: 0.2 }),
      row("2026-12-01", { key: null, cost_usd: 0.3, requests: 4 }),
    ]);
    expect(groups.map((g) => g.period)).toEqual(["2026-12-03", "2026-12-01"]);
    expect(groups[1].rows.map((r) => r.key)).toEqual([null, 2, 1]);
    expect(groups[1].totals.requests).toBe(6);
    expect(groups[1].totals.cost_usd).toBeCloseTo(0.7);
  });

  it("give each day's cost over its groups", () => {
    const days = costPerDay([row("2026-12-01", { cost_usd: 0.25 }), row("2026-12-01", { cost_usd: 0.5 })], "2026-11-30", "2026-12-01");
    expect(days).toEqual([{ day: "2026-11-30", cost: 0 }, { day: "2026-12-01", cost: 0.75 }]);
  });

  it("name their group", () => {
    const keys = [{ id: 1, name: "laptop" }];
    const accounts = [{ id: 3, name: "team" }];
    expect(groupOf(row("2026-12-01", { key: 1 }), "key")).toBe(1);
    expect(groupOf(row("2026-12-01", { model: null }), "model")).toBeNull();
    expect(groupName("key", 1, keys, accounts)).toBe("laptop");
    expect(groupName("key", 9, keys, accounts)).toBe("#9");
    expect(groupName("account", 3, keys, accounts)).toBe("team");
    expect(groupName("account", 3, keys, undefined)).toBe("#3");
    expect(groupName("model", "claude-sonnet-4-6", keys, accounts)).toBe("claude-sonnet-4-6");
    expect(groupName("model", null, keys, accounts)).toBe("none");
    expect(groupName("key", null, keys, accounts)).toBe("none");
  });
});
