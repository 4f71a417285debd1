// The logs page's filters as the URL keeps them and the server takes them, and how a logged
// request's error reads. Pure: `now` is always passed in.

import type { LogFilters, LogRow } from "./api";
import { proxyFailure } from "./proxy";

export const RANGES: { value: string; label: string; seconds: number | null }[] = [
  { value: "all", label: "Any time", seconds: null },
  { value: "15m", label: "Last 15 min", seconds: 900 },
  { value: "1h", label: "Last hour", seconds: 3600 },
  { value: "24h", label: "Last 24 h", seconds: 86_400 },
  { value: "7d", label: "Last 7 days", seconds: 7 * 86_400 },
];

export interface FilterState {
  /** An account id, or "" for all (as the select holds it). */
  account: string;
  key: string;
  /** As typed: checked by `statusProblem` before it is sent. */
  status: string;
  /** As typed; the server matches it against the model name. */
  model: string;
  /** One of RANGES' values. */
  range: string;
}

export const NO_FILTERS: FilterState = { account: "", key: "", status: "", model: "", range: "all" };

/** Why a typed status filter cannot be asked for, or null when it can ("" too: no filter). */
export function statusProblem(text: string): string | null {
  const value = text.trim();
  if (value === "") return null;
  if (!/^\d{1,3}$/.test(value) || Number(value) < 100 || Number(value) > 599) {
    return "A status is a number from 100 to 599, e.g. 429.";
  }
  return null;
}

/** What the server is asked for. Call it only when `statusProblem` found nothing. */
export function toQuery(f: FilterState, now: number): LogFilters {
  const range = RANGES.find((r) => r.value === f.range)?.seconds ?? null;
  const status = f.status.trim();
  return {
    account_id: /^\d+$/.test(f.account) ? Number(f.account) : undefined,
    key_id: /^\d+$/.test(f.key) ? Number(f.key) : undefined,
    status: status && statusProblem(status) === null ? Number(status) : undefined,
    model: f.model.trim() || undefined,
    since: range ? new Date(now - range * 1000).toISOString() : undefined,
  };
}

// URL parameter ↔ filter: short names an operator can read and edit in the address bar.
const PARAMS: [keyof FilterState, string][] = [
  ["account", "account"], ["key", "key"], ["status", "status"], ["model", "model"], ["range", "range"],
];

/** The filters a location's query string (`?key=3&status=429`) names; the rest as NO_FILTERS. */
export function filtersFromSearch(search: string): FilterState {
  const params = new URLSearchParams(search);
  const filters = { ...NO_FILTERS };
  for (const [field, name] of PARAMS) {
    const value = params.get(name);
    if (value !== null) filters[field] = value.slice(0, 200);
  }
  if (!RANGES.some((r) => r.value === filters.range)) filters.range = NO_FILTERS.range;
  return filters;
}

/** The query string that keeps `filters` ("" for none): what differs from NO_FILTERS. */
export function searchOf(filters: FilterState): string {
  const params = new URLSearchParams();
  for (const [field, name] of PARAMS) {
    const value = field === "range" ? filters.range : filters[field].trim();
    if (value !== NO_FILTERS[field]) params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * What went wrong with a logged request, in a line: its error type (or its HTTP status when it
 * has none), then why in words: the server's message; in rows written before it kept one, what
 * the last failed attempt's proxy did. Null for a request that succeeded.
 */
export function logError(row: Pick<LogRow, "status" | "error_type" | "error_message" | "attempts">): string | null {
  if (row.error_type === null && row.status < 400) return null;
  const kind = row.error_type ?? `HTTP ${row.status}`;
  const proxied = [...row.attempts].reverse().find((a) => a.proxy);
  const why = row.error_message || (proxied?.proxy ? proxyFailure(proxied.error_type, proxied.proxy) : null);
  return why ? `${kind}: ${why}` : kind;
}

/** Why Kestrel refuses a request itself because of the pool (kestrel/proxy/pool.py). */
const POOL_REFUSALS = ["no_accounts", "all_cooling_down", "none_can_serve"];

/** Who gave a failed request its answer, in words: the pool (no account could serve it),
 * Kestrel before any account was tried (the client's key, its limits, its request), or the
 * upstream. */
export function errorSource(row: Pick<LogRow, "error_type" | "attempts">): string {
  if (row.error_type !== null && POOL_REFUSALS.includes(row.error_type)) return "Kestrel answered: no account could serve it";
  if (row.attempts.length === 0) return "Kestrel answered before any account was tried";
  return "Error";
}

/**
 * For Kestrel's own 429 when every account is cooling down: the account back first, and when,
 * as its message names them ("… back in 60 s (alpha, at 2026-12-05T10:00:00Z)"). Null for any
 * other request, or a message that does not say.
 */
export function firstBack(row: Pick<LogRow, "error_type" | "error_message">): { account: string; at: number } | null {
  if (row.error_type !== "all_cooling_down" || !row.error_message) return null;
  const match = / \((.+), at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\)$/.exec(row.error_message);
  const at = match ? Date.parse(match[2]) : NaN;
  return match && !Number.isNaN(at) ? { account: match[1], at } : null;
}
