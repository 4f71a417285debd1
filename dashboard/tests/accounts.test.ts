import { describe, expect, it } from "vitest";
import type { Attempt, RateLimits } from "../src/lib/api";
import { headroom, rateLimitGauges } from "../src/lib/headroom";
import { attemptFailure, failedBefore, failureKinds, failureLabel } from "../src/lib/tries";

describe("an account's failed tries", () => {
  it("read as the status an error type comes with, else as the server names them", () => {
    expect(failureLabel("rate_limit_error")).toBe("429");
    expect(failureLabel("overloaded_error")).toBe("529");
    expect(failureLabel("http_503")).toBe("503");
    expect(failureLabel("timeout")).toBe("timeout");
    expect(failureLabel("proxy_unreachable")).toBe("proxy_unreachable");
  });

  it("add up by kind, the most first", () => {
    expect(failureKinds({ rate_limit_error: 2, overloaded_error: 6 })).toEqual(["529 ×6", "429 ×2"]);
    expect(failureKinds({ rate_limit_error: 1, http_429: 2, connect: 3 })).toEqual(["429 ×3", "connect ×3"]);
    expect(failureKinds({ timeout: 0 })).toEqual([]);
  });

  const attempt = (account_id: number, status: number | null, error_type: string | null = null): Attempt =>
    ({ account_id, status, error_type, duration_ms: 5, proxy: null, message: null, account_name: null });

  it("of a logged request: those before the account that answered, or all when none did", () => {
    const failover = [attempt(1, 429, "rate_limit_error"), attempt(2, null, "proxy_unreachable"), attempt(3, 200)];
    expect(failedBefore({ account_id: 3, attempts: failover }).map(attemptFailure)).toEqual(["429", "proxy_unreachable"]);
    // An error the answering account gave is the request's own, not a try before it.
    expect(failedBefore({ account_id: 1, attempts: [attempt(1, 400, "invalid_request_error")] })).toEqual([]);
    expect(failedBefore({ account_id: 2, attempts: [attempt(1, 200, "stream_error"), attempt(2, 200)] }).map(attemptFailure))
      .toEqual(["stream_error"]);
    expect(failedBefore({ account_id: null, attempts: [attempt(1, 429), attempt(2, 529)] }).map(attemptFailure)).toEqual(["429", "529"]);
    expect(failedBefore({ account_id: 1, attempts: [attempt(1, 200)] })).toEqual([]);
  });
});

describe("rate-limit headroom", () => {
  const limits: RateLimits = {
    observed_at: "2026-03-01T12:00:00.000Z",
    output_tokens: { limit: 8000, remaining: 2000, reset_at: "2026-03-01T12:01:00.000Z" },
    requests: { limit: 50, remaining: 49, reset_at: "2026-03-01T12:00:30.000Z" },
    tokens: { limit: null, remaining: 10, reset_at: null },
  };

  it("shows what is left of each limit reported, requests first", () => {
    const gauges = rateLimitGauges({ rate_limits: limits });
    expect(gauges.map((g) => [g.key, g.short, g.left])).toEqual([
      ["requests", "Requests", { remaining: 49, limit: 50 }],
      ["output_tokens", "Output", { remaining: 2000, limit: 8000 }],
    ]);
    expect(gauges[0].used).toBeCloseTo(0.02);
    expect(gauges[1].used).toBe(0.75);
    expect(gauges[0].resetsAt).toBe(Date.parse("2026-03-01T12:00:30Z"));
    expect(rateLimitGauges({ rate_limits: { observed_at: null, requests: { limit: 0, remaining: 0, reset_at: null } } })[0].used).toBe(1);
  });

  it("is nothing until an answer reported it", () => {
    expect(rateLimitGauges({ rate_limits: null })).toEqual([]);
    expect(headroom({ rate_limits: null, usage_windows: null })).toEqual({ gauges: [], observedAt: null, rejected: false });
  });

  it("stands after a subscription's windows, seen as of the latest answer", () => {
    const account = {
      rate_limits: limits,
      usage_windows: { status: "rejected", observed_at: "2026-03-01T11:00:00.000Z", windows: { "5h": { utilization: 1, reset_at: null } } },
    };
    const { gauges, observedAt, rejected } = headroom(account);
    expect(gauges.map((g) => [g.label, g.left === null])).toEqual([["5 h window", true], ["Requests", false], ["Output tokens", false]]);
    expect(observedAt).toBe(Date.parse("2026-03-01T12:00:00Z"));
    expect(rejected).toBe(true);
  });
});
