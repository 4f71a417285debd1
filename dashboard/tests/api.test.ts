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
  const openapi = (paths: string[]) => answer(200, { paths: Object.fromEntries(paths.map((p) => [p, {}])) });
  const oauthPaths = ["/admin/oauth/start", "/admin/oauth/exchange"];

  it("says absent when the server has no OAuth routes", async () => {
    const client = new Client("k", (async () => openapi(["/admin/accounts"])) as typeof fetch);
    expect(await client.features()).toEqual({ oauth: "absent" });
  });

  it("says off, with the server's reason, when OAuth is not configured", async () => {
    const fetch = vi.fn(async (url: string) => url === "/openapi.json" ? openapi(oauthPaths)
      : answer(400, { error: { type: "invalid_request_error", message: "OAuth accounts are off: set OAUTH_CLIENT_ID", field: null } }));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    expect(await client.features()).toEqual({ oauth: "off", message: "OAuth accounts are off: set OAUTH_CLIENT_ID" });
  });

  it("says on when the empty probe is refused as an invalid body", async () => {
    const fetch = vi.fn(async (url: string) => url === "/openapi.json" ? openapi(oauthPaths)
      : answer(422, { error: { type: "invalid_request_error", message: "name is required", field: "name" } }));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    expect(await client.features()).toEqual({ oauth: "on" });
  });
});
