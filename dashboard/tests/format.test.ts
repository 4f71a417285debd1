import { describe, expect, it } from "vitest";
import {
  accountTone, compact, formatClock, formatDateTime, formatInt, formatMs, formatSpan, httpTone,
  parseTime, percent, relativeTime, secondsUntil, usageTone,
} from "../src/lib/format";

const NOW = Date.parse("2026-03-01T12:00:00Z");

describe("numbers", () => {
  it("formats integers and compact counts", () => {
    expect(formatInt(1234567)).toBe("1,234,567");
    expect(formatInt(null)).toBe("—");
    expect(compact(950)).toBe("950");
    expect(compact(1234)).toBe("1.2k");
    expect(compact(1000)).toBe("1k");
    expect(compact(3_400_000)).toBe("3.4M");
    expect(compact(250_000)).toBe("250k");
    expect(compact(undefined)).toBe("—");
  });

  it("formats percentages", () => {
    expect(percent(0.1234)).toBe("12.3%");
    expect(percent(0)).toBe("0%");
    expect(percent(1)).toBe("100%");
    expect(percent(0.0004)).toBe("<0.1%");
    expect(percent(0.5, 0)).toBe("50%");
    expect(percent(null)).toBe("—");
  });
});

describe("durations", () => {
  it("formats milliseconds by size", () => {
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(0.42)).toBe("0.4 ms");
    expect(formatMs(340.4)).toBe("340 ms");
    expect(formatMs(1240)).toBe("1.24 s");
    expect(formatMs(12_400)).toBe("12.4 s");
    expect(formatMs(65_000)).toBe("1m 05s");
    expect(formatMs(null)).toBe("—");
  });

  it("formats countdown spans", () => {
    expect(formatSpan(0)).toBe("0s");
    expect(formatSpan(59.2)).toBe("1m 00s");
    expect(formatSpan(45)).toBe("45s");
    expect(formatSpan(245)).toBe("4m 05s");
    expect(formatSpan(2 * 3600 + 13 * 60)).toBe("2h 13m");
    expect(formatSpan(3 * 86_400 + 4 * 3600 + 5)).toBe("3d 4h");
    expect(formatSpan(-5)).toBe("0s");
  });
});

describe("times", () => {
  it("parses RFC 3339, epoch seconds and epoch milliseconds", () => {
    expect(parseTime("2026-03-01T12:00:00.000Z")).toBe(NOW);
    expect(parseTime(NOW / 1000)).toBe(NOW);
    expect(parseTime(NOW)).toBe(NOW);
    expect(parseTime(String(NOW / 1000))).toBe(NOW);
    expect(parseTime("not a time")).toBeNull();
    expect(parseTime(null)).toBeNull();
    expect(parseTime("")).toBeNull();
  });

  it("counts down to a future time and stops at zero", () => {
    expect(secondsUntil("2026-03-01T12:01:00Z", NOW)).toBe(60);
    expect(secondsUntil("2026-03-01T11:59:00Z", NOW)).toBeNull();
    expect(secondsUntil(null, NOW)).toBeNull();
  });

  it("says how long ago", () => {
    expect(relativeTime(null, NOW)).toBe("never");
    expect(relativeTime(NOW - 2000, NOW)).toBe("just now");
    expect(relativeTime(NOW - 42_000, NOW)).toBe("42s ago");
    expect(relativeTime(NOW - 5 * 60_000, NOW)).toBe("5 min ago");
    expect(relativeTime(NOW - 3 * 3_600_000, NOW)).toBe("3 h ago");
    expect(relativeTime(NOW - 2 * 86_400_000, NOW)).toBe("2 d ago");
    expect(relativeTime(NOW + 5 * 60_000, NOW)).toBe("in 5 min");
  });

  it("shows the clock, with the date when not today", () => {
    const earlier = new Date(NOW);
    earlier.setHours(9, 5, 7);
    expect(formatClock(earlier.getTime(), earlier.getTime())).toBe("09:05:07");
    const dayBefore = earlier.getTime() - 86_400_000;
    expect(formatClock(dayBefore, earlier.getTime())).toMatch(/^[A-Z][a-z]{2} \d{1,2} 09:05:07$/);
    expect(formatDateTime(earlier.getTime())).toMatch(/^\d{4}-\d\d-\d\d 09:05:07$/);
    expect(formatClock(null, NOW)).toBe("—");
  });
});

describe("tones", () => {
  it("colours HTTP statuses by what they mean", () => {
    expect(httpTone(200)).toBe("good");
    expect(httpTone(429)).toBe("warn");
    expect(httpTone(404)).toBe("warn");
    expect(httpTone(529)).toBe("warn");
    expect(httpTone(502)).toBe("bad");
    expect(httpTone(null)).toBe("bad");
  });

  it("colours account states", () => {
    expect(accountTone("active")).toBe("good");
    expect(accountTone("cooldown")).toBe("warn");
    expect(accountTone("invalid")).toBe("bad");
    expect(accountTone("disabled")).toBe("muted");
  });

  it("colours usage by how close to the limit", () => {
    expect(usageTone(0.2)).toBe("good");
    expect(usageTone(0.75)).toBe("warn");
    expect(usageTone(0.95)).toBe("bad");
    expect(usageTone(0.1, "rejected")).toBe("bad");
    expect(usageTone(0.1, "allowed_warning")).toBe("warn");
  });
});
