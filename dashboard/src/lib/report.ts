// /admin/usage reports as the usage page and the cost chart read them: days and months as
// the server names them ("2026-12-04", "2026-12"), rows put together per period, groups named.
// Pure: `now` is always passed in.

import type { Account, ApiKey, UsageCounts, UsageGroup, UsagePeriod, UsageRow } from "./api";

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** The browser's calendar day of `at`, as YYYY-MM-DD. */
export function localDay(at: number): string {
  const d = new Date(at);
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Local midnight of a YYYY-MM-DD day, or of the first of a YYYY-MM month; null if neither. */
export function dayStart(day: string): number | null {
  const match = /^(\d{4})-(\d{2})(?:-(\d{2}))?$/.exec(day);
  if (!match) return null;
  const [year, month, date] = [Number(match[1]), Number(match[2]), Number(match[3] ?? 1)];
  const d = new Date(0);
  d.setFullYear(year, month - 1, date);
  d.setHours(0, 0, 0, 0);
  return d.getMonth() === month - 1 && d.getDate() === date ? d.getTime() : null;
}

/** `day` moved by whole calendar days (a clock change does not shift it). */
export function addDays(day: string, days: number): string {
  const start = dayStart(day);
  if (start === null) throw new RangeError(`not a day: ${day}`);
  const d = new Date(start);
  d.setDate(d.getDate() + days);
  return localDay(d.getTime());
}

/** Every day from `from` to `to`, both included (none when `to` is before `from`). */
export function daysFrom(from: string, to: string): string[] {
  const days: string[] = [];
  for (let day = from; day <= to && days.length < 3700; day = addDays(day, 1)) days.push(day);
  return days;
}

/** What the usage page asks for at first: this month by day, or the last 13 months by month
 * (the server's defaults, in the browser's calendar). */
export function defaultRange(period: UsagePeriod, now: number): { from: string; to: string } {
  const today = localDay(now);
  if (period === "day") return { from: `${today.slice(0, 7)}-01`, to: today };
  return { from: `${Number(today.slice(0, 4)) - 1}${today.slice(4, 7)}`, to: today.slice(0, 7) };
}

/** "Fri, Dec 4, 2026" for a day, "December 2026" for a month. */
export function periodLabel(period: string): string {
  const start = dayStart(period);
  if (start === null) return period;
  const options: Intl.DateTimeFormatOptions = period.length > 7
    ? { weekday: "short", month: "short", day: "numeric", year: "numeric" }
    : { month: "long", year: "numeric" };
  return new Date(start).toLocaleDateString("en-US", options);
}

/** A report's range in few words: "Dec 1 – Dec 4" by day (years said when they differ),
 * "Dec 2025 – Dec 2026" by month. */
export function rangeLabel(from: string, to: string, period: UsagePeriod): string {
  const [start, end] = [dayStart(from), dayStart(to)];
  if (start === null || end === null) return `${from} – ${to}`;
  const years = from.slice(0, 4) !== to.slice(0, 4);
  const options: Intl.DateTimeFormatOptions = period === "month"
    ? { month: "short", year: "numeric" }
    : { month: "short", day: "numeric", ...(years ? { year: "numeric" } : {}) };
  const [a, b] = [start, end].map((t) => new Date(t).toLocaleDateString("en-US", options));
  return a === b ? a : `${a} – ${b}`;
}

export const NO_USAGE: UsageCounts = {
  requests: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_creation_tokens: 0,
  unpriced: 0, cost_usd: 0,
};

export function sumUsage(rows: UsageCounts[]): UsageCounts {
  const total = { ...NO_USAGE };
  for (const row of rows) {
    for (const name of Object.keys(total) as (keyof UsageCounts)[]) total[name] += row[name] ?? 0;
  }
  return total;
}

export interface UsagePeriodGroup {
  period: string;
  rows: UsageRow[];
  totals: UsageCounts;
}

/** The rows of each period together, newest period first; within one, the costliest first. */
export function byPeriod(rows: UsageRow[]): UsagePeriodGroup[] {
  const periods = new Map<string, UsageRow[]>();
  for (const row of rows) periods.set(row.period, [...(periods.get(row.period) ?? []), row]);
  return [...periods.entries()]
    .sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0))
    .map(([period, list]) => ({
      period,
      rows: [...list].sort((a, b) => b.cost_usd - a.cost_usd || b.requests - a.requests),
      totals: sumUsage(list),
    }));
}

/** Each day's cost summed over its groups, for every day from `from` to `to` (0 when none). */
export function costPerDay(rows: UsageRow[], from: string, to: string): { day: string; cost: number }[] {
  const costs = new Map<string, number>();
  for (const row of rows) costs.set(row.period, (costs.get(row.period) ?? 0) + row.cost_usd);
  return daysFrom(from, to).map((day) => ({ day, cost: costs.get(day) ?? 0 }));
}

/** The row's group: a key or account id, a model name, or null. */
export function groupOf(row: UsageRow, groupBy: UsageGroup): number | string | null {
  return row[groupBy] ?? null;
}

/** A group as a person reads it: a key's or account's name, a model, "none" for no group. */
export function groupName(
  groupBy: UsageGroup, group: number | string | null,
  keys: Pick<ApiKey, "id" | "name">[] | undefined, accounts: Pick<Account, "id" | "name">[] | undefined,
): string {
  if (group === null) return "none";
  if (groupBy === "model") return String(group);
  const list = groupBy === "key" ? keys : accounts;
  return list?.find((x) => x.id === group)?.name ?? `#${group}`;
}
