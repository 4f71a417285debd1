// A client key's controls as the key forms edit them (text in, the admin API's values out) and
// as the keys list summarises them. Pure: `now` is always passed in.

import type { ApiKey, KeyChanges, KeyControls, KeyLimits } from "./api";
import { compact, parseTime, relativeTime, type Tone } from "./format";
import { formatUsd } from "./money";

/** "a, b\nc" → ["a", "b", "c"]: split on commas and line breaks, blanks dropped. */
export function splitList(text: string): string[] {
  return text.split(/[,\r\n]+/).map((item) => item.trim()).filter(Boolean);
}

/** The list as text to edit; null (no limit) and [] both read as "". */
export function joinList(items: string[] | null | undefined): string {
  return (items ?? []).join(", ");
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

const LOCAL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/;

/**
 * A `datetime-local` value ("2027-01-31T09:30", the browser's local time) as UTC RFC 3339 with
 * `Z`, the form the server wants; "" → null. Throws a RangeError when it is no date and time.
 */
export function localToIso(value: string): string | null {
  const text = value.trim();
  if (!text) return null;
  const match = LOCAL.exec(text);
  if (!match) throw new RangeError(`not a date and time: ${text}`);
  const [year, month, day, hour, minute, second, fraction] = match.slice(1);
  const date = new Date(0);
  date.setFullYear(Number(year), Number(month) - 1, Number(day));
  date.setHours(Number(hour), Number(minute), Number(second ?? 0), Number((fraction ?? "0").padEnd(3, "0")));
  // Out of range (month 13, 31 February, 24:00) rolls over in Date: refuse it instead. A time a
  // clock change skips (02:30 in a spring-forward gap) moves on by the gap, as the browser does.
  if (date.getMonth() !== Number(month) - 1 || date.getDate() !== Number(day)
    || Number(hour) > 23 || Number(minute) > 59 || Number(second ?? 0) > 59) {
    throw new RangeError(`not a date and time: ${text}`);
  }
  return date.toISOString();
}

/** A time as a `datetime-local` value in the browser's local time (seconds only when set). */
export function isoToLocal(value: string | null | undefined): string {
  const at = parseTime(value);
  if (at === null) return "";
  const d = new Date(at);
  const base = `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.getSeconds() ? `${base}:${pad(d.getSeconds())}` : base;
}

/** The numeric limits: each input, the API's field, and whether it is a count or dollars. */
export const LIMITS = [
  { field: "rpm", api: "rpm", usd: false },
  { field: "tpm", api: "tpm", usd: false },
  { field: "maxConcurrency", api: "max_concurrency", usd: false },
  { field: "dailyTokens", api: "daily_tokens", usd: false },
  { field: "dailyBudget", api: "daily_budget_usd", usd: true },
  { field: "monthlyBudget", api: "monthly_budget_usd", usd: true },
] as const satisfies readonly { field: string; api: keyof KeyLimits; usd: boolean }[];

export type LimitField = (typeof LIMITS)[number]["field"];

/** The key form's inputs, as typed. */
export interface KeyFormValues extends Record<LimitField, string> {
  name: string;
  owner: string;
  models: string;
  allowedIps: string;
  expires: string;
  note: string;
}

export type KeyField = keyof KeyFormValues;

export function formValues(key?: ApiKey | null): KeyFormValues {
  const limits = Object.fromEntries(LIMITS.map(({ field, api }) => {
    const value = key?.[api];
    return [field, value === null || value === undefined ? "" : String(value)];
  })) as Record<LimitField, string>;
  return {
    name: key?.name ?? "",
    owner: key?.owner ?? "",
    models: joinList(key?.models),
    allowedIps: joinList(key?.allowed_ips),
    expires: isoToLocal(key?.expires_at),
    note: key?.note ?? "",
    ...limits,
  };
}

/**
 * A limit as typed: a whole count of 1 or more ("1,000" and "1 000" read as 1000), or dollars,
 * 0 or more ("$5", "0.50"); "" → null (no limit). Throws a RangeError saying what to type.
 */
export function parseLimit(text: string, usd: boolean): number | null {
  if (usd) {
    const amount = text.trim().replace(/^\$\s*/, "");
    if (!amount) return null;
    if (!/^(\d+(\.\d*)?|\.\d+)$/.test(amount)) throw new RangeError("Dollars, e.g. 5 or 0.50; empty for no limit.");
    return Number(amount);
  }
  const count = text.replace(/[\s,_]/g, "");
  if (!count) return null;
  if (!/^\d+$/.test(count) || Number(count) < 1) throw new RangeError("A whole number, 1 or more; empty for no limit.");
  if (!Number.isSafeInteger(Number(count))) throw new RangeError("Too large; empty for no limit.");
  return Number(count);
}

/** What is wrong with the inputs before anything is sent, by input. */
export function formErrors(values: KeyFormValues): Partial<Record<KeyField, string>> {
  const errors: Partial<Record<KeyField, string>> = {};
  if (!values.name.trim()) errors.name = "Name the key after who or what uses it.";
  try {
    localToIso(values.expires);
  } catch {
    errors.expires = "A date and time, or empty for never.";
  }
  for (const { field, usd } of LIMITS) {
    try {
      parseLimit(values[field], usd);
    } catch (exc) {
      errors[field] = (exc as Error).message;
    }
  }
  return errors;
}

const listOrNull = (text: string) => {
  const items = splitList(text);
  return items.length ? items : null;
};
const textOrNull = (text: string) => text.trim() || null;

/** Each control from its input; an empty input is null (no limit). Throws for a bad expiry or
 * limit (`formErrors` says which). */
export function controlsOf(values: KeyFormValues): Required<KeyControls> {
  const limits = Object.fromEntries(LIMITS.map(({ field, api, usd }) => [api, parseLimit(values[field], usd)]));
  return {
    owner: textOrNull(values.owner),
    models: listOrNull(values.models),
    allowed_ips: listOrNull(values.allowedIps),
    expires_at: localToIso(values.expires),
    note: textOrNull(values.note),
    ...(limits as Required<KeyLimits>),
  };
}

/** What to create: the name, and only the controls given. */
export function createBody(values: KeyFormValues): { name: string; controls: KeyControls } {
  const controls: KeyControls = {};
  for (const [field, value] of Object.entries(controlsOf(values))) {
    if (value !== null) (controls as Record<string, unknown>)[field] = value;
  }
  return { name: values.name.trim(), controls };
}

/** What an edit changed: an input left as it was is left out, one cleared is sent as null. */
export function keyChanges(initial: KeyFormValues, current: KeyFormValues): KeyChanges {
  const changes: KeyChanges = {};
  const next = controlsOf(current);
  const same = (field: KeyField, list = false) => list
    ? joinList(splitList(initial[field])) === joinList(splitList(current[field]))
    : initial[field].trim() === current[field].trim();
  if (!same("name")) changes.name = current.name.trim();
  if (!same("owner")) changes.owner = next.owner;
  if (!same("models", true)) changes.models = next.models;
  if (!same("allowedIps", true)) changes.allowed_ips = next.allowed_ips;
  if (!same("expires")) changes.expires_at = next.expires_at;
  if (!same("note")) changes.note = next.note;
  for (const { field, api } of LIMITS) {
    if (!same(field)) changes[api] = next[api];
  }
  return changes;
}

/** The input a server error's `field` names: "models[0]" → "models", "expires_at" → "expires". */
export function formField(field: string | null | undefined): KeyField | null {
  const head = (field ?? "").replace(/\[.*$/, "").split(".")[0];
  const fields: Record<string, KeyField> = {
    name: "name", owner: "owner", models: "models", allowed_ips: "allowedIps", expires_at: "expires", note: "note",
    ...Object.fromEntries(LIMITS.map(({ field, api }) => [api, field])),
  };
  return fields[head] ?? null;
}

export function isExpired(key: Pick<ApiKey, "expires_at">, now: number): boolean {
  const at = parseTime(key.expires_at);
  return at !== null && at <= now;
}

export interface Limit {
  kind: "models" | "expires" | "ips" | "rates" | "budgets";
  text: string;
  tone: Tone;
}

const present = (value: number | null | undefined): value is number => value !== null && value !== undefined;

/** The key's rates and daily tokens in one line: "60 rpm · 100k tpm · 5 concurrent · 1M tokens/day". */
export function ratesOf(key: KeyLimits): string | null {
  const parts = [
    present(key.rpm) && `${compact(key.rpm)} rpm`,
    present(key.tpm) && `${compact(key.tpm)} tpm`,
    present(key.max_concurrency) && `${compact(key.max_concurrency)} concurrent`,
    present(key.daily_tokens) && `${compact(key.daily_tokens)} tokens/day`,
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : null;
}

/** The key's budgets in one line: "$5.00/day · $100.00/month". */
export function budgetsOf(key: KeyLimits): string | null {
  const parts = [
    present(key.daily_budget_usd) && `${formatUsd(key.daily_budget_usd)}/day`,
    present(key.monthly_budget_usd) && `${formatUsd(key.monthly_budget_usd)}/month`,
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : null;
}

/** The key's limits in a few words each: "models: claude-haiku-*", "expires in 3 d", "IPs: …",
 * "60 rpm · 5 concurrent", "$5.00/day". */
export function limitsOf(key: Pick<ApiKey, "models" | "expires_at" | "allowed_ips"> & KeyLimits, now: number): Limit[] {
  const limits: Limit[] = [];
  if (key.models) {
    limits.push(key.models.length
      ? { kind: "models", text: `models: ${key.models.join(", ")}`, tone: "info" }
      : { kind: "models", text: "models: none", tone: "warn" });
  }
  const at = parseTime(key.expires_at);
  if (at !== null) {
    if (at <= now) limits.push({ kind: "expires", text: `expired ${relativeTime(at, now)}`, tone: "bad" });
    else limits.push({ kind: "expires", text: `expires ${relativeTime(at, now)}`, tone: at - now < 7 * 86_400_000 ? "warn" : "muted" });
  }
  if (key.allowed_ips) {
    limits.push(key.allowed_ips.length
      ? { kind: "ips", text: `IPs: ${key.allowed_ips.join(", ")}`, tone: "muted" }
      : { kind: "ips", text: "IPs: none", tone: "warn" });
  }
  const rates = ratesOf(key);
  if (rates) limits.push({ kind: "rates", text: rates, tone: "muted" });
  const budgets = budgetsOf(key);
  if (budgets) limits.push({ kind: "budgets", text: budgets, tone: "muted" });
  return limits;
}
