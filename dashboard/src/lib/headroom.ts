// What an account has left, as bars: an OAuth account's subscription windows (the share used)
// and an API-key account's rate limits (requests and tokens left of the limit, from the
// `anthropic-ratelimit-*` headers of its latest answer).

import type { Account, RateLimitName } from "./api";
import { parseTime } from "./format";
import { usageSummary, usageWindows } from "./usage";

export interface Gauge {
  key: string;
  /** "5 h window", "Requests", "Input tokens". */
  label: string;
  /** The same for a narrow cell: "5 h", "Requests", "Input". */
  short: string;
  /** The share used, 0..1. */
  used: number;
  /** Anthropic's verdict on a subscription window ("allowed_warning"...); null for a limit. */
  status: string | null;
  resetsAt: number | null;
  /** A rate limit's figures; null for a subscription window (read as a share used). */
  left: { remaining: number; limit: number } | null;
}

export interface Headroom {
  gauges: Gauge[];
  /** When the latest answer that reported any of them came. */
  observedAt: number | null;
  /** Anthropic refuses the subscription's requests until a window resets. */
  rejected: boolean;
}

const LIMITS: [RateLimitName, string, string][] = [
  ["requests", "Requests", "Requests"],
  ["tokens", "Tokens", "Tokens"],
  ["input_tokens", "Input tokens", "Input"],
  ["output_tokens", "Output tokens", "Output"],
];

/** The rate limits an API-key account's latest answer reported, in a fixed order; a limit
 * reported without both its figures is left out (there is nothing to draw). */
export function rateLimitGauges(account: Pick<Account, "rate_limits">): Gauge[] {
  const limits = account.rate_limits;
  if (!limits) return [];
  return LIMITS.flatMap(([name, label, short]) => {
    const { limit = null, remaining = null, reset_at = null } = limits[name] ?? {};
    if (limit === null || remaining === null) return [];
    return [{
      key: name, label, short, status: null, resetsAt: parseTime(reset_at),
      used: limit > 0 ? Math.min(1, Math.max(0, 1 - remaining / limit)) : 1,
      left: { remaining, limit },
    }];
  });
}

export function headroom(account: Pick<Account, "usage_windows" | "rate_limits">): Headroom {
  const windows: Gauge[] = usageWindows(account).map((w) => ({
    key: w.name, label: `${w.label} window`, short: w.label, used: w.utilization, status: w.status,
    resetsAt: w.resetsAt, left: null,
  }));
  const summary = usageSummary(account);
  const seen = [summary.observedAt, parseTime(account.rate_limits?.observed_at)].filter((t) => t !== null);
  return {
    gauges: [...windows, ...rateLimitGauges(account)],
    observedAt: seen.length ? Math.max(...seen) : null,
    rejected: summary.status === "rejected",
  };
}
