// Numbers, durations and times as an operator reads them. Pure: `now` is always passed in.

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function formatInt(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? "—" : integer.format(n);
}

/** 950 → "950", 1234 → "1.2k", 3_400_000 → "3.4M". */
export function compact(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  const abs = Math.abs(n);
  const units: [number, string][] = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
  for (const [size, suffix] of units) {
    if (abs >= size) {
      const value = n / size;
      const text = Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1).replace(/\.0$/, "");
      return `${text}${suffix}`;
    }
  }
  return integer.format(n);
}

/** Milliseconds: "0.4 ms", "340 ms", "1.24 s", "1m 05s". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms === 0) return "0 ms";
  if (ms < 1) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, "0")}s`;
}

/** A span of whole seconds, for countdowns: "45s", "4m 05s", "2h 13m", "3d 4h". */
export function formatSpan(totalSeconds: number): string {
  const s = Math.max(0, Math.ceil(totalSeconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

export function parseTime(value: string | number | null | undefined): number | null {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    // Epoch seconds (as Anthropic's reset headers give them) or milliseconds.
    return value < 1e12 ? value * 1000 : value;
  }
  if (/^\d+(\.\d+)?$/.test(value)) return parseTime(Number(value));
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** Seconds from `now` until `value`, or null when there is no time or it has passed. */
export function secondsUntil(value: string | number | null | undefined, now: number): number | null {
  const at = parseTime(value);
  if (at === null) return null;
  const left = (at - now) / 1000;
  return left > 0 ? left : null;
}

/** "just now", "42s ago", "5 min ago", "3 h ago", "2 d ago", or "in 5 min" for the future. */
export function relativeTime(value: string | number | null | undefined, now: number): string {
  const at = parseTime(value);
  if (at === null) return "never";
  const diff = Math.round((now - at) / 1000);
  const future = diff < 0;
  const s = Math.abs(diff);
  let text: string;
  if (s < 5) return "just now";
  if (s < 60) text = `${s}s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86_400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86_400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** Local wall-clock time, "14:03:27"; with the date when it is not today. */
export function formatClock(value: string | number | null | undefined, now: number): string {
  const at = parseTime(value);
  if (at === null) return "—";
  const date = new Date(at);
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const today = new Date(now);
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString("en-US", { month: "short", day: "numeric" })} ${time}`;
}

/** Full local date and time for detail views and tooltips. */
export function formatDateTime(value: string | number | null | undefined): string {
  const at = parseTime(value);
  if (at === null) return "—";
  const d = new Date(at);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function percent(fraction: number | null | undefined, digits = 1): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return "—";
  const value = fraction * 100;
  if (value !== 0 && Math.abs(value) < 0.1) return "<0.1%";
  return `${value.toFixed(digits).replace(/\.0+$/, "")}%`;
}

export type Tone = "good" | "warn" | "bad" | "muted" | "info";

export function httpTone(status: number | null | undefined): Tone {
  if (status === null || status === undefined) return "bad";
  if (status < 300) return "good";
  if (status === 429 || status === 529) return "warn";
  if (status < 500) return "warn";
  return "bad";
}

export function accountTone(status: string): Tone {
  switch (status) {
    case "active":
      return "good";
    case "cooldown":
      return "warn";
    case "exhausted":
      return "warn";
    case "invalid":
      return "bad";
    default:
      return "muted";
  }
}

/** Fill of a usage bar: fine, getting close, nearly out (or rejected by Anthropic). */
export function usageTone(utilization: number, status?: string | null): Tone {
  if (status === "rejected" || utilization >= 0.9) return "bad";
  if (status === "allowed_warning" || utilization >= 0.7) return "warn";
  return "good";
}

/**
 * A model name in three parts for a narrow cell: the `claude-` prefix (left out on phones), a
 * head that gives way to an ellipsis, and the last `tail` characters, always shown: names
 * alike but for their end (claude-sonnet-4-5, claude-sonnet-4-6) must stay apart.
 */
export function modelParts(name: string, tail = 6): { prefix: string; head: string; tail: string } {
  const prefix = name.startsWith("claude-") && name.length > "claude-".length ? "claude-" : "";
  const rest = name.slice(prefix.length);
  const cut = Math.max(0, rest.length - tail);
  return { prefix, head: rest.slice(0, cut), tail: rest.slice(cut) };
}
