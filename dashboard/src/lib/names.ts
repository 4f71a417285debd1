// Names of accounts this browser has seen, so that a deleted account still reads "retired
// (deleted)" rather than "#8" where the server gives only its id: usage by account (the usage
// report names no account), and log rows written before the server kept names (their
// `account_name` is null; newer rows carry it and need none of this). A deleted account is
// gone from `/admin/accounts`. Names are not secrets (never a credential).

import type { Account } from "./api";

const KEY = "kestrel.accountNames";
/** Enough for any pool; the oldest entries go first past it. */
const MAX = 500;

/** Where the names are kept: localStorage, or nothing (tests, storage disabled). */
export interface NameStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

function browserStore(): NameStore | null {
  try {
    return typeof window === "undefined" ? null : window.localStorage;
  } catch {
    return null;
  }
}

export function knownNames(store: NameStore | null = browserStore()): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(store?.getItem(KEY) ?? "{}");
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter(([id, name]) => /^\d+$/.test(id) && typeof name === "string"));
  } catch {
    return {};
  }
}

/** Keep the names of `accounts` (a list the server just gave); writes only when one is new. */
export function rememberAccounts(accounts: Pick<Account, "id" | "name">[], store: NameStore | null = browserStore()): void {
  if (!store) return;
  const names = knownNames(store);
  if (accounts.every((a) => names[String(a.id)] === a.name)) return;
  for (const a of accounts) {
    delete names[String(a.id)]; // re-inserted last: the entries stay in the order last seen
    names[String(a.id)] = a.name;
  }
  const entries = Object.entries(names);
  try {
    store.setItem(KEY, JSON.stringify(Object.fromEntries(entries.slice(Math.max(0, entries.length - MAX)))));
  } catch {
    // storage full or refused: the names live as long as the page
  }
}

/**
 * An account's name for a log or a report: from the current list (a rename since shows the
 * name of now, as the filters and the accounts page do); once the list is loaded and lacks it,
 * the name the log row kept (`logged`) or this browser remembers, marked "(deleted)", else
 * "#id (deleted)". Before the list has loaded, either name or "#id".
 */
export function accountLabel(
  id: number | null, accounts: Pick<Account, "id" | "name">[] | undefined, known: Record<string, string> = knownNames(),
  logged?: string | null,
): string {
  if (id === null) return "—";
  const current = accounts?.find((a) => a.id === id);
  if (current) return current.name;
  const name = logged || known[String(id)];
  if (!accounts) return name ?? `#${id}`;
  return `${name ?? `#${id}`} (deleted)`;
}
