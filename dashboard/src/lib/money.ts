// Dollars as an operator reads them, and what has been used against a limit. Pure.

import type { LogRow } from "./api";
import { compact, type Tone } from "./format";

const cents = new Intl.NumberFormat("en-US", {
  style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 2,
});

/** Most decimals shown: a millionth of a dollar. */
const MAX_DECIMALS = 6;

/**
 * A dollar amount: cents from a dollar up ("$1,234.50"); below, `digits` significant digits
 * but never fewer than cents ("$0.42", "$0.0042", "$0.00028"); "<$0.000001" for less.
 */
export function formatUsd(usd: number | null | undefined, digits = 2): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd)) return "—";
  const abs = Math.abs(usd);
  if (abs === 0) return "$0.00";
  const sign = usd < 0 ? "-" : "";
  if (abs >= 1) return cents.format(usd);
  if (abs < 0.5 * 10 ** -MAX_DECIMALS) return `${sign}<$${(10 ** -MAX_DECIMALS).toFixed(MAX_DECIMALS)}`;
  const decimals = Math.min(MAX_DECIMALS, Math.max(2, digits - 1 - Math.floor(Math.log10(abs))));
  // Rounding may carry into a dollar (0.996 → "1.00"), which reads right as it is.
  const text = abs.toFixed(decimals).replace(/(\.\d{2}\d*?)0+$/, "$1");
  return `${sign}$${text}`;
}

/** An axis label: short, and exact enough for 1, 2, 2.5 and 5 steps ("$0.0025", "$1.2k"). */
export function usdAxis(usd: number): string {
  return Math.abs(usd) >= 1000 ? `$${compact(usd)}` : formatUsd(usd, 3);
}

/** From this fraction of a limit on, its bar turns amber; at 1 (the limit), red. */
export const NEAR_LIMIT = 0.8;

/** How much of a limit is used (1 = all of it, more when over); null when there is no limit. A
 * limit of 0 is used up from the start. */
export function usedFraction(used: number, limit: number | null | undefined): number | null {
  if (limit === null || limit === undefined || !Number.isFinite(limit)) return null;
  if (limit <= 0) return 1;
  return Math.max(0, used) / limit;
}

export function limitTone(fraction: number): Tone {
  if (fraction >= 1) return "bad";
  if (fraction >= NEAR_LIMIT) return "warn";
  return "good";
}

/** A log row's cost as the table shows it; an unpriced row says so instead of "$0.00". */
export function logCost(row: Pick<LogRow, "cost_usd" | "priced" | "model">): { text: string; title?: string; unpriced: boolean } {
  if (row.priced === false) {
    return {
      text: "unpriced",
      title: `${row.model ?? "This model"} is not in the price table: its cost is not counted`,
      unpriced: true,
    };
  }
  return { text: formatUsd(row.cost_usd), unpriced: false };
}
