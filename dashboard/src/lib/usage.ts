// Subscription usage windows of OAuth accounts ("5h", "7d", …). The server sends
// `{status, reset_at, observed_at, windows: {"5h": {utilization, reset_at, status}, …}}`;
// a bare map keyed by window or a list of windows is read too.

import type { Account, UsageSummary, UsageWindowRaw } from "./api";
import { parseTime } from "./format";

export interface UsageWindow {
  name: string;
  label: string;
  /** 0..1 */
  utilization: number;
  resetsAt: number | null;
  status: string | null;
}

const ORDER = ["5h", "7d", "7d_opus", "7d_sonnet"];

function label(name: string): string {
  const match = /^(\d+)([hd])(?:_(.+))?$/.exec(name);
  if (!match) return name.replace(/_/g, " ");
  const [, n, unit, model] = match;
  const base = `${n} ${unit}`;
  return model ? `${base} · ${model}` : base;
}

function one(name: string, raw: UsageWindowRaw): UsageWindow {
  let utilization = typeof raw.utilization === "number" && Number.isFinite(raw.utilization)
    ? raw.utilization : 0;
  if (utilization > 1.5) utilization /= 100; // a percentage slipped through
  utilization = Math.min(1, Math.max(0, utilization));
  return {
    name,
    label: label(name),
    utilization,
    resetsAt: parseTime(raw.reset_at ?? raw.reset ?? raw.resets_at ?? null),
    status: typeof raw.status === "string" ? raw.status : null,
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function usageWindows(account: Pick<Account, "usage_windows">): UsageWindow[] {
  const raw = account.usage_windows;
  if (!raw) return [];
  let windows: UsageWindow[];
  if (Array.isArray(raw)) {
    windows = raw.filter(isObject).map((w) => one(String(w.window ?? w.name ?? "?"), w));
  } else {
    const map = isObject((raw as UsageSummary).windows) ? (raw as UsageSummary).windows! : raw;
    windows = Object.entries(map)
      .filter(([, w]) => isObject(w) && ("utilization" in w || "reset_at" in w || "reset" in w))
      .map(([name, w]) => one(name, w as UsageWindowRaw));
  }
  const rank = (name: string) => {
    const i = ORDER.indexOf(name);
    return i === -1 ? ORDER.length : i;
  };
  return windows.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

/** The overall verdict ("allowed", "allowed_warning", "rejected") and when it was seen. */
export function usageSummary(account: Pick<Account, "usage_windows">): { status: string | null; observedAt: number | null } {
  const raw = account.usage_windows;
  if (!isObject(raw)) return { status: null, observedAt: null };
  const summary = raw as UsageSummary;
  return {
    status: typeof summary.status === "string" ? summary.status : null,
    observedAt: parseTime(summary.observed_at ?? null),
  };
}
