// An account's upstream tries as the operator reads them: how the failed ones failed, in a word
// each ("429", "529", "timeout"), from `/admin/stats` or a logged request's attempts.

import type { Attempt, LogRow } from "./api";

/** Anthropic's error types, by the status they come with. */
const STATUS_OF: Record<string, number> = {
  invalid_request_error: 400, authentication_error: 401, billing_error: 402, permission_error: 403,
  not_found_error: 404, request_too_large: 413, rate_limit_error: 429, api_error: 500,
  timeout_error: 504, overloaded_error: 529,
};

/** A kind of failure in a word: the status of an upstream error type or `http_<status>`
 * ("429"), else the kind as the server names it (`timeout`, `proxy_unreachable`). */
export function failureLabel(kind: string): string {
  const http = /^http_(\d{3})$/.exec(kind);
  if (http) return http[1];
  return kind in STATUS_OF ? String(STATUS_OF[kind]) : kind;
}

/** Failures by kind as ["529 ×6", "429 ×2"]: the most first, kinds that read the same added
 * up. */
export function failureKinds(byType: Record<string, number>): string[] {
  const counts = new Map<string, number>();
  for (const [kind, count] of Object.entries(byType)) {
    const label = failureLabel(kind);
    counts.set(label, (counts.get(label) ?? 0) + count);
  }
  return [...counts].filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([label, count]) => `${label} ×${count}`);
}

/** Whether an attempt failed: no answer, an answer other than 2xx, or a 2xx that broke off. */
function attemptFailed(a: Pick<Attempt, "status" | "error_type">): boolean {
  return a.status === null || a.status >= 300 || a.error_type !== null;
}

/** A logged request's tries that failed before the account that answered it (the last try; an
 * error it answered is the request's own), or every failed one when no account answered. */
export function failedBefore(row: Pick<LogRow, "account_id" | "attempts">): Attempt[] {
  return row.attempts.slice(0, row.account_id === null ? undefined : -1).filter(attemptFailed);
}

/** How an attempt failed, in a word ("429", "proxy_unreachable"). Call it on a failed one. */
export function attemptFailure(a: Pick<Attempt, "status" | "error_type">): string {
  return failureLabel(a.error_type ?? `http_${a.status}`);
}
