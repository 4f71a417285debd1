import { describe, expect, it } from "vitest";
import { formatUsd, limitTone, logCost, usdAxis, usedFraction } from "../src/lib/money";

describe("dollars", () => {
  it("show cents from a dollar up", () => {
    expect(formatUsd(0)).toBe("$0.00");
    expect(formatUsd(1)).toBe("$1.00");
    expect(formatUsd(12.345)).toBe("$12.35");
    expect(formatUsd(1234.5)).toBe("$1,234.50");
    expect(formatUsd(null)).toBe("—");
    expect(formatUsd(Number.NaN)).toBe("—");
  });

  it("keep two significant digits below a dollar, never fewer than cents", () => {
    expect(formatUsd(0.5)).toBe("$0.50");
    expect(formatUsd(0.4213)).toBe("$0.42");
    expect(formatUsd(0.05)).toBe("$0.05");
    expect(formatUsd(0.0042)).toBe("$0.0042");
    expect(formatUsd(0.004)).toBe("$0.004");
    expect(formatUsd(0.000282)).toBe("$0.00028");
    expect(formatUsd(0.0000123)).toBe("$0.000012");
    expect(formatUsd(0.000003)).toBe("$0.000003");
    expect(formatUsd(0.0000002)).toBe("<$0.000001");
    expect(formatUsd(0.996)).toBe("$1.00");
    expect(formatUsd(-0.0042)).toBe("-$0.0042");
  });

  it("label an axis exactly enough for its half-way line", () => {
    expect(usdAxis(0)).toBe("$0.00");
    expect(usdAxis(0.00125)).toBe("$0.00125");
    expect(usdAxis(0.0025)).toBe("$0.0025");
    expect(usdAxis(1.25)).toBe("$1.25");
    expect(usdAxis(250)).toBe("$250.00");
    expect(usdAxis(2500)).toBe("$2.5k");
  });
});

describe("used against a limit", () => {
  it("is a fraction, or null without a limit", () => {
    expect(usedFraction(2.5, 10)).toBe(0.25);
    expect(usedFraction(12, 10)).toBe(1.2);
    expect(usedFraction(3, null)).toBeNull();
    expect(usedFraction(3, undefined)).toBeNull();
    expect(usedFraction(0, 0)).toBe(1); // a budget of 0 allows nothing
  });

  it("turns amber near the limit and red at it", () => {
    expect(limitTone(0)).toBe("good");
    expect(limitTone(0.79)).toBe("good");
    expect(limitTone(0.8)).toBe("warn");
    expect(limitTone(0.99)).toBe("warn");
    expect(limitTone(1)).toBe("bad");
    expect(limitTone(3)).toBe("bad");
  });
});

describe("a log row's cost", () => {
  it("is dollars, or marked unpriced with the reason", () => {
    expect(logCost({ cost_usd: 0.0042, priced: true, model: "claude-sonnet-4-6" })).toEqual({ text: "$0.0042", unpriced: false });
    expect(logCost({ cost_usd: 0, priced: true, model: null })).toEqual({ text: "$0.00", unpriced: false });
    const unpriced = logCost({ cost_usd: 0, priced: false, model: "my-model" });
    expect(unpriced.text).toBe("unpriced");
    expect(unpriced.unpriced).toBe(true);
    expect(unpriced.title).toContain("my-model is not in the price table");
  });
});
