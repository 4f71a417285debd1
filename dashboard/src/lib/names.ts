// Names of accounts this browser has seen, so that logs and usage of a deleted account still
// read "retired (deleted)" rather than "#8": the server's logs carry only the account id, and a
// deleted account is gone from `/admin/accounts`. Names are not secrets (never a credential).

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
 * An account's name for a log or a report: from the current list; once the list is loaded and
 * lacks it, the name the log kept (`logged`, from newer servers) or this browser remembers,
 * marked "(deleted)", else "#id (deleted)". Before the list has loaded, either name or "#id".
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
