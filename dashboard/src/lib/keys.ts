// A client key's controls as the key forms edit them (text in, the admin API's values out) and
// as the keys list summarises them. Pure: `now` is always passed in.

import type { ApiKey, KeyChanges, KeyControls } from "./api";
import { parseTime, relativeTime, type Tone } from "./format";

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

/** The key form's inputs, as typed. */
export interface KeyFormValues {
  name: string;
  owner: string;
  models: string;
  allowedIps: string;
  expires: string;
  note: string;
}

export type KeyField = keyof KeyFormValues;

export function formValues(key?: ApiKey | null): KeyFormValues {
  return {
    name: key?.name ?? "",
    owner: key?.owner ?? "",
    models: joinList(key?.models),
    allowedIps: joinList(key?.allowed_ips),
    expires: isoToLocal(key?.expires_at),
    note: key?.note ?? "",
  };
}

const listOrNull = (text: string) => {
  const items = splitList(text);
  return items.length ? items : null;
};
const textOrNull = (text: string) => text.trim() || null;

/** Each control from its input; an empty input is null (no limit). Throws for a bad expiry. */
export function controlsOf(values: KeyFormValues): Required<KeyControls> {
  return {
    owner: textOrNull(values.owner),
    models: listOrNull(values.models),
    allowed_ips: listOrNull(values.allowedIps),
    expires_at: localToIso(values.expires),
    note: textOrNull(values.note),
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
  return changes;
}

/** The input a server error's `field` names: "models[0]" → "models", "expires_at" → "expires". */
export function formField(field: string | null | undefined): KeyField | null {
  const head = (field ?? "").replace(/\[.*$/, "").split(".")[0];
  const fields: Record<string, KeyField> = {
    name: "name", owner: "owner", models: "models", allowed_ips: "allowedIps", expires_at: "expires", note: "note",
  };
  return fields[head] ?? null;
}

export function isExpired(key: Pick<ApiKey, "expires_at">, now: number): boolean {
  const at = parseTime(key.expires_at);
  return at !== null && at <= now;
}

export interface Limit {
  kind: "models" | "expires" | "ips";
  text: string;
  tone: Tone;
}

/** The key's limits in a few words each: "models: claude-haiku-*", "expires in 3 d", "IPs: …". */
export function limitsOf(key: Pick<ApiKey, "models" | "expires_at" | "allowed_ips">, now: number): Limit[] {
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
  return limits;
}
