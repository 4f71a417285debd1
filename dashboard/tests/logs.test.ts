import { describe, expect, it } from "vitest";
import type { Attempt } from "../src/lib/api";
import { modelParts } from "../src/lib/format";
import { errorSource, filtersFromSearch, firstBack, logError, NO_FILTERS, searchOf, statusProblem, toQuery } from "../src/lib/logs";
import { accountLabel, knownNames, rememberAccounts, type NameStore } from "../src/lib/names";
import { navHref, rememberSearch } from "../src/lib/router";

describe("log filters", () => {
  it("are kept in the query string, only those set, and read back", () => {
    const filters = { ...NO_FILTERS, key: "3", status: " 429 ", model: "claude-sonnet-4-6", range: "1h" };
    const search = searchOf(filters);
    expect(search).toBe("?key=3&status=429&model=claude-sonnet-4-6&range=1h");
    expect(filtersFromSearch(search)).toEqual({ ...filters, status: "429" });
    expect(searchOf(NO_FILTERS)).toBe("");
    expect(filtersFromSearch("")).toEqual(NO_FILTERS);
  });

  it("ignore an unknown time range and unknown parameters", () => {
    expect(filtersFromSearch("?range=5y&colour=red")).toEqual(NO_FILTERS);
  });

  it("keep a status as typed, checked before it is sent", () => {
    expect(filtersFromSearch("?status=abc").status).toBe("abc");
    for (const bad of ["abc", "99", "999", "4x9", "600", "-42"]) expect(statusProblem(bad)).toMatch(/100 to 599/);
    for (const good of ["", " ", "100", "429", "599"]) expect(statusProblem(good)).toBeNull();
  });

  it("ask the server for what is valid only", () => {
    const now = Date.parse("2026-03-01T12:00:00Z");
    expect(toQuery({ ...NO_FILTERS, account: "2", status: "429", model: " sonnet ", range: "1h" }, now)).toEqual({
      account_id: 2, key_id: undefined, status: 429, model: "sonnet", since: "2026-03-01T11:00:00.000Z",
    });
    expect(toQuery({ ...NO_FILTERS, status: "abc", key: "x" }, now)).toMatchObject({ status: undefined, key_id: undefined });
  });

  it("are where the navigation returns to", () => {
    rememberSearch("logs", "?status=500");
    expect(navHref("logs")).toBe("/app/logs?status=500");
    rememberSearch("logs", "");
    expect(navHref("logs")).toBe("/app/logs");
  });
});

describe("a logged error", () => {
  const attempt = (error_type: string | null, proxy: string | null = null): Attempt =>
    ({ account_id: 1, status: null, error_type, duration_ms: 5, proxy, message: null, account_name: null });
  const row = (status: number, error_type: string | null, attempts: Attempt[] = [], error_message: string | null = null) =>
    ({ status, error_type, error_message, attempts });

  it("is nothing for a success, even after a failed try", () => {
    expect(logError(row(200, null, [attempt("rate_limit_error"), attempt(null)]))).toBeNull();
  });

  it("reads as its type, or its status, and why in the server's words", () => {
    expect(logError(row(400, "invalid_request_error"))).toBe("invalid_request_error");
    expect(logError(row(502, null))).toBe("HTTP 502");
    const proxied = [attempt("proxy_unreachable", "http://127.0.0.1:9")];
    expect(logError(row(429, "all_cooling_down", proxied, "every account is cooling down")))
      .toBe("all_cooling_down: every account is cooling down");
    expect(logError(row(400, "invalid_request_error", [{ ...attempt("invalid_request_error"), message: "too large" }], "max_tokens: too large")))
      .toBe("invalid_request_error: max_tokens: too large");
  });

  it("in a row written before the server kept messages, says what the proxy did", () => {
    expect(logError(row(503, "none_can_serve", [attempt("proxy_unreachable", "http://127.0.0.1:9")])))
      .toBe("none_can_serve: proxy http://127.0.0.1:9 could not be reached");
  });

  it("says who answered: the pool, Kestrel before any try, or the upstream", () => {
    expect(errorSource(row(429, "all_cooling_down", [attempt("rate_limit_error")]))).toMatch(/no account could serve/);
    expect(errorSource(row(503, "no_accounts"))).toMatch(/no account could serve/);
    expect(errorSource(row(403, "model_not_allowed"))).toMatch(/before any account was tried/);
    expect(errorSource(row(400, "invalid_request_error", [attempt("invalid_request_error")]))).toBe("Error");
  });
});

describe("every account cooling down", () => {
  const message = "every Anthropic account is rate-limited or cooling down; the first is back in 42 s";

  it("names the account back first and when, from Kestrel's message", () => {
    expect(firstBack({ error_type: "all_cooling_down", error_message: `${message} (alpha, at 2026-12-05T10:00:42Z)` }))
      .toEqual({ account: "alpha", at: Date.parse("2026-12-05T10:00:42Z") });
    // A name with a comma or brackets of its own is kept whole.
    expect(firstBack({ error_type: "all_cooling_down", error_message: `${message} (eu (2), at ams, at 2026-12-05T10:00:42Z)` })?.account)
      .toBe("eu (2), at ams");
  });

  it("is nothing for another error, or a message that does not say", () => {
    expect(firstBack({ error_type: "rate_limit_error", error_message: `${message} (alpha, at 2026-12-05T10:00:42Z)` })).toBeNull();
    expect(firstBack({ error_type: "all_cooling_down", error_message: message })).toBeNull();
    expect(firstBack({ error_type: "all_cooling_down", error_message: null })).toBeNull();
    expect(firstBack({ error_type: "all_cooling_down", error_message: `${message} (alpha, at 2026-13-45T99:00:00Z)` })).toBeNull();
  });
});

describe("account names", () => {
  const memory = (): NameStore & { data: Map<string, string> } => {
    const data = new Map<string, string>();
    return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
  };

  it("outlive the account: a deleted one reads as its remembered name", () => {
    const store = memory();
    rememberAccounts([{ id: 8, name: "retired" }, { id: 9, name: "main" }], store);
    const known = knownNames(store);
    const now = [{ id: 9, name: "main" }];
    expect(accountLabel(9, now, known)).toBe("main");
    expect(accountLabel(8, now, known)).toBe("retired (deleted)");
    expect(accountLabel(7, now, known)).toBe("#7 (deleted)");
    expect(accountLabel(8, undefined, known)).toBe("retired"); // the list is not loaded yet
    expect(accountLabel(7, undefined, known)).toBe("#7");
    expect(accountLabel(null, now, known)).toBe("—");
    // The name the log row kept wins over the browser's memory; the current one over both.
    expect(accountLabel(8, now, known, "old-name")).toBe("old-name (deleted)");
    expect(accountLabel(7, now, {}, "kept")).toBe("kept (deleted)");
    expect(accountLabel(9, now, known, "renamed-since")).toBe("main");
  });

  it("follow a rename, write only when something changed, and survive junk", () => {
    const store = memory();
    rememberAccounts([{ id: 1, name: "a" }], store);
    rememberAccounts([{ id: 1, name: "b" }], store);
    expect(knownNames(store)).toEqual({ 1: "b" });
    let writes = 0;
    rememberAccounts([{ id: 1, name: "b" }], { ...store, setItem: () => void writes++ });
    expect(writes).toBe(0);
    store.data.set("kestrel.accountNames", "not json");
    expect(knownNames(store)).toEqual({});
    store.data.set("kestrel.accountNames", '{"x": "y", "2": 3, "4": "ok"}');
    expect(knownNames(store)).toEqual({ 4: "ok" });
    expect(knownNames(null)).toEqual({});
  });
});

describe("model names", () => {
  it("split so that the end always shows, and the claude- prefix can go", () => {
    expect(modelParts("claude-sonnet-4-5")).toEqual({ prefix: "claude-", head: "sonn", tail: "et-4-5" });
    expect(modelParts("claude-sonnet-4-6").tail).not.toBe(modelParts("claude-sonnet-4-5").tail);
    expect(modelParts("gpt-4o")).toEqual({ prefix: "", head: "", tail: "gpt-4o" });
    expect(modelParts("claude-")).toEqual({ prefix: "", head: "c", tail: "laude-" });
    const parts = modelParts("claude-3-5-sonnet-20241022");
    expect(parts.prefix + parts.head + parts.tail).toBe("claude-3-5-sonnet-20241022");
  });
});
