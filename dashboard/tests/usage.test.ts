import { describe, expect, it } from "vitest";
import { usageSummary, usageWindows } from "../src/lib/usage";

describe("usage windows", () => {
  it("reads the server's summary shape, 5h before 7d", () => {
    const account = {
      usage_windows: {
        status: "allowed_warning",
        reset_at: "2026-03-01T15:00:00.000Z",
        representative_claim: "five_hour",
        observed_at: "2026-03-01T12:00:00.000Z",
        windows: {
          "7d": { status: "allowed", utilization: 0.31, reset_at: "2026-03-05T00:00:00.000Z" },
          "5h": { status: "allowed_warning", utilization: 0.82, reset_at: "2026-03-01T15:00:00.000Z" },
          "7d_opus": { status: "allowed", utilization: null, reset_at: null },
        },
      },
    };
    const windows = usageWindows(account);
    expect(windows.map((w) => w.name)).toEqual(["5h", "7d", "7d_opus"]);
    expect(windows[0]).toEqual({
      name: "5h", label: "5 h", utilization: 0.82, status: "allowed_warning",
      resetsAt: Date.parse("2026-03-01T15:00:00Z"),
    });
    expect(windows[2].label).toBe("7 d · opus");
    expect(windows[2].utilization).toBe(0);
    expect(usageSummary(account)).toEqual({ status: "allowed_warning", observedAt: Date.parse("2026-03-01T12:00:00Z") });
  });

  it("reads a bare map and a list, with epoch-second resets", () => {
    expect(usageWindows({ usage_windows: { "5h": { utilization: 0.5, reset: 1_772_000_000 } } })[0].resetsAt)
      .toBe(1_772_000_000_000);
    const list = usageWindows({ usage_windows: [{ window: "7d", utilization: 45 }, { name: "5h", utilization: 1.2 }] });
    expect(list.map((w) => [w.name, w.utilization])).toEqual([["5h", 1], ["7d", 0.45]]);
  });

  it("has nothing to show for accounts without usage", () => {
    expect(usageWindows({ usage_windows: null })).toEqual([]);
    expect(usageWindows({})).toEqual([]);
    expect(usageWindows({ usage_windows: { status: "allowed", windows: {} } })).toEqual([]);
    expect(usageSummary({ usage_windows: null })).toEqual({ status: null, observedAt: null });
  });
});
