import { describe, expect, it, vi } from "vitest";
import { ApiError, Client, describeError, NetworkError, query } from "../src/lib/api";

function answer(status: number, body?: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status, headers: { "content-type": "application/json" },
  });
}

describe("query strings", () => {
  it("leaves out empty values and encodes the rest", () => {
    expect(query({ a: 1, b: undefined, c: null, d: "", e: "x y", f: false })).toBe("?a=1&e=x+y&f=false");
    expect(query({})).toBe("");
  });
});

describe("the admin client", () => {
  it("sends the admin key and JSON, and reads JSON back", async () => {
    const fetch = vi.fn(async () => answer(201, { id: 3, name: "laptop", key: "kst_x" }));
    const client = new Client("kadm_secret", fetch as unknown as typeof globalThis.fetch);
    const created = await client.createKey("laptop");
    expect(created.key).toBe("kst_x");
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/admin/keys");
    expect(init.method).toBe("POST");
    expect((init.headers as Record<string, string>)["X-Admin-Key"]).toBe("kadm_secret");
    expect(init.body).toBe('{"name":"laptop"}');
  });

  it("builds log queries with filters and the cursor", async () => {
    const fetch = vi.fn(async (_url: string) => answer(200, { data: [], next_cursor: null }));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    await client.logs({ account_id: 2, status: 429, model: undefined }, "abc", 50);
    expect(fetch.mock.calls[0][0]).toBe("/admin/logs?account_id=2&status=429&cursor=abc&limit=50");
    await client.stats("7d");
    expect(fetch.mock.calls[1][0]).toBe("/admin/stats?window=7d");
    await client.usage({ group_by: "account", period: "month", from: "2026-01", to: undefined });
    expect(fetch.mock.calls[2][0]).toBe("/admin/usage?group_by=account&period=month&from=2026-01");
  });

  it("returns nothing for 204", async () => {
    const client = new Client("k", (async () => new Response(null, { status: 204 })) as typeof fetch);
    await expect(client.deleteAccount(1)).resolves.toBeUndefined();
  });

  it("turns Kestrel's error shape into ApiError with the field", async () => {
    const client = new Client("k", (async () => answer(422, {
      error: { type: "invalid_request_error", message: "priority must be an integer", field: "priority" },
    })) as typeof fetch);
    const error = await client.createAccount({ name: "a" }).catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect([error.status, error.type, error.field, error.message]).toEqual(
      [422, "invalid_request_error", "priority", "priority must be an integer"]);
  });

  it("survives an error body that is not JSON", async () => {
    const client = new Client("k", (async () => new Response("<html>oops</html>", { status: 502, statusText: "Bad Gateway" })) as typeof fetch);
    const error = await client.accounts().catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.message).toBe("Bad Gateway (502)");
  });

  it("signs out on 401 and reports network failures", async () => {
    const onUnauthorized = vi.fn();
    const refused = new Client("k", (async () => answer(401, { error: { type: "authentication_error", message: "invalid admin key" } })) as typeof fetch, onUnauthorized);
    await expect(refused.accounts()).rejects.toThrow("invalid admin key");
    expect(onUnauthorized).toHaveBeenCalledOnce();
    const down = new Client("k", (async () => { throw new TypeError("Failed to fetch"); }) as typeof fetch);
    const error = await down.keys().catch((e) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(describeError(error)).toContain("Failed to fetch");
    expect(describeError(new ApiError(429, "rate_limit_error", "too many attempts"))).toContain("wait");
  });
});

describe("feature detection", () => {
  const info = (oauth: boolean) => ({
    version: "1.2.3", instance: "host:8080", database: { engine: "sqlite", where: "kestrel.db" },
    workers: null, oauth, egress: {}, settings: {},
  });

  it("reads /admin/info and never probes the OAuth routes", async () => {
    const fetch = vi.fn(async (_url: string) => answer(200, info(true)));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    expect(await client.features()).toEqual({ oauth: "on", info: info(true) });
    expect(fetch.mock.calls.map((c) => c[0])).toEqual(["/admin/info"]);
  });

  it("says off, with what to set, when OAuth is not configured", async () => {
    const client = new Client("k", (async () => answer(200, info(false))) as typeof fetch);
    const features = await client.features();
    expect(features.oauth).toBe("off");
    expect(features.message).toContain("OAUTH_CLIENT_ID");
    expect(features.info?.version).toBe("1.2.3");
  });

  it("says absent when the server does not answer /admin/info", async () => {
    const client = new Client("k", (async () => answer(404, { error: { type: "not_found_error", message: "no such route" } })) as typeof fetch);
    expect(await client.features()).toEqual({ oauth: "absent" });
  });
});

describe("account tests", () => {
  it("posts to the account's test route", async () => {
    const fetch = vi.fn(async (_url: string, _init?: RequestInit) => answer(200, { ok: true, status: 200 }));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    expect((await client.testAccount(7)).ok).toBe(true);
    expect(fetch.mock.calls[0][0]).toBe("/admin/accounts/7/test");
    expect(fetch.mock.calls[0][1]?.method).toBe("POST");
  });
});
