// Rows of the log table: pages appended as the operator goes back in time, and new rows put
// on top by the live tail. Rows are newest first and unique by id.

import type { LogRow } from "./api";

/** Most rows kept in the table; the oldest fall off (they can be paged back in). */
export const MAX_ROWS = 2000;

/** The next (older) page appended below what is shown. */
export function appendOlder(rows: LogRow[], page: LogRow[]): LogRow[] {
  const seen = new Set(rows.map((r) => r.id));
  return [...rows, ...page.filter((r) => !seen.has(r.id))];
}

/** The first page fetched again (live tail): rows newer than the newest shown go on top. */
export function mergeNewer(rows: LogRow[], fresh: LogRow[]): { rows: LogRow[]; added: number } {
  if (rows.length === 0) return { rows: fresh.slice(0, MAX_ROWS), added: fresh.length };
  const newest = rows[0].id;
  const added = fresh.filter((r) => r.id > newest);
  if (added.length === 0) return { rows, added: 0 };
  return { rows: [...added, ...rows].slice(0, MAX_ROWS), added: added.length };
}
