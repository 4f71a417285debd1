// A router of five pages does not need a library: the History API and one hook.

import { useEffect, useState } from "react";

export const BASE = "/app";

export type Page = "overview" | "accounts" | "keys" | "logs" | "usage";

export const PAGES: { page: Page; path: string; label: string }[] = [
  { page: "overview", path: "/", label: "Overview" },
  { page: "accounts", path: "/accounts", label: "Accounts" },
  { page: "keys", path: "/keys", label: "Keys" },
  { page: "logs", path: "/logs", label: "Logs" },
  { page: "usage", path: "/usage", label: "Usage" },
];

/** The page a location path shows; unknown paths show the overview. */
export function pageOf(pathname: string): Page {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const first = rest.replace(/^\/+/, "").split("/")[0];
  return PAGES.find((p) => p.path === `/${first}`)?.page ?? "overview";
}

export function hrefOf(page: Page): string {
  const path = PAGES.find((p) => p.page === page)?.path ?? "/";
  return path === "/" ? `${BASE}/` : `${BASE}${path}`;
}

// The query string a page last had (its filters), for as long as the app runs: the way back to
// a page from the navigation returns to it as it was left. A reload keeps the URL itself.
const searches = new Map<Page, string>();

/** Keep `search` ("?status=429", or "" for none) as where `page` was left. */
export function rememberSearch(page: Page, search: string): void {
  if (search) searches.set(page, search);
  else searches.delete(page);
}

/** Where the navigation sends to `page`: its path, with the query string it was left with. */
export function navHref(page: Page): string {
  return hrefOf(page) + (searches.get(page) ?? "");
}

const EVENT = "kestrel:navigate";

export function navigate(href: string, replace = false): void {
  if (href === window.location.pathname + window.location.search) return;
  if (replace) window.history.replaceState(null, "", href);
  else window.history.pushState(null, "", href);
  window.dispatchEvent(new Event(EVENT));
}

export function useLocation(): { pathname: string; search: string } {
  const read = () => ({ pathname: window.location.pathname, search: window.location.search });
  const [location, setLocation] = useState(read);
  useEffect(() => {
    const update = () => setLocation(read());
    window.addEventListener("popstate", update);
    window.addEventListener(EVENT, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(EVENT, update);
    };
  }, []);
  return location;
}
