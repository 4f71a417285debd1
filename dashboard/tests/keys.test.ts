import { describe, expect, it, vi } from "vitest";
import { Client, type ApiKey } from "../src/lib/api";
import {
  createBody, formErrors, formField, formValues, isExpired, isoToLocal, keyChanges, limitsOf, localToIso, parseLimit, splitList,
} from "../src/lib/keys";

const key = (over: Partial<ApiKey> = {}): ApiKey => ({
  id: 7, name: "laptop", prefix: "kst_abcd", created_at: null, last_used_at: null, revoked_at: null,
  models: null, expires_at: null, allowed_ips: null, owner: null, note: null,
  rpm: null, tpm: null, max_concurrency: null, daily_tokens: null, daily_budget_usd: null, monthly_budget_usd: null,
  tokens_today: 0, spent_today_usd: 0, spent_this_month_usd: 0, ...over,
});

describe("lists typed as text", () => {
  it("split on commas and line breaks, blanks dropped", () => {
    expect(splitList("claude-haiku-*, claude-sonnet-4-6\n\n  gpt ,")).toEqual(["claude-haiku-*", "claude-sonnet-4-6", "gpt"]);
    expect(splitList("10.0.0.0/8\r\n192.168.1.2")).toEqual(["10.0.0.0/8", "192.168.1.2"]);
    expect(splitList(" , \n ")).toEqual([]);
  });
});

describe("datetime-local values", () => {
  it("are the browser's local time, sent as UTC with Z", () => {
    expect(localToIso("2027-01-31T09:30")).toBe(new Date(2027, 0, 31, 9, 30).toISOString());
    expect(localToIso("2027-01-31T09:30:15")).toBe(new Date(2027, 0, 31, 9, 30, 15).toISOString());
    expect(localToIso("2027-01-31T09:30")).toMatch(/^2027-01-3\dT\d\d:\d\d:00\.000Z$/);
    expect(localToIso("")).toBeNull();
    expect(localToIso("  ")).toBeNull();
  });

  it("refuse what is no date and time", () => {
    expect(() => localToIso("tomorrow")).toThrow(RangeError);
    expect(() => localToIso("2027-02-31T10:00")).toThrow(RangeError);
    expect(() => localToIso("2027-01-31T24:00")).toThrow(RangeError);
  });

  it("round-trip through the input's value", () => {
    const iso = new Date(2027, 5, 1, 18, 45).toISOString();
    expect(isoToLocal(iso)).toBe("2027-06-01T18:45");
    expect(localToIso(isoToLocal(iso))).toBe(iso);
    expect(isoToLocal(new Date(2027, 5, 1, 18, 45, 12).toISOString())).toBe("2027-06-01T18:45:12");
    expect(isoToLocal(null)).toBe("");
  });
});

describe("the key form", () => {
  it("creates with the name and only the controls given", () => {
    const values = { ...formValues(), name: " laptop ", owner: "ana", models: "claude-haiku-*", expires: "2027-01-31T00:00" };
    expect(createBody(values)).toEqual({
      name: "laptop",
      controls: { owner: "ana", models: ["claude-haiku-*"], expires_at: new Date(2027, 0, 31).toISOString() },
    });
    expect(createBody({ ...formValues(), name: "ci" })).toEqual({ name: "ci", controls: {} });
  });

  it("edits send only what changed, a cleared input as null", () => {
    const initial = formValues(key({ models: ["claude-haiku-*"], owner: "ana", allowed_ips: ["10.1.2.3/32"] }));
    expect(initial).toMatchObject({ name: "laptop", models: "claude-haiku-*", owner: "ana", allowedIps: "10.1.2.3/32", note: "" });
    expect(keyChanges(initial, { ...initial })).toEqual({});
    expect(keyChanges(initial, { ...initial, models: "claude-haiku-* ,\n" })).toEqual({});
    expect(keyChanges(initial, { ...initial, note: "work laptop", owner: "" })).toEqual({ note: "work laptop", owner: null });
    expect(keyChanges(initial, { ...initial, models: "", allowedIps: "10.0.0.0/8, 10.1.2.3/32", name: "desk" }))
      .toEqual({ models: null, allowed_ips: ["10.0.0.0/8", "10.1.2.3/32"], name: "desk" });
    expect(keyChanges(initial, { ...initial, expires: "2027-01-31T00:00" }))
      .toEqual({ expires_at: new Date(2027, 0, 31).toISOString() });
  });

  it("reads limits as typed: whole counts of 1 or more, dollars of 0 or more, empty for none", () => {
    expect(parseLimit("", false)).toBeNull();
    expect(parseLimit("  ", true)).toBeNull();
    expect(parseLimit("60", false)).toBe(60);
    expect(parseLimit(" 1,000,000 ", false)).toBe(1_000_000);
    expect(parseLimit("100 000", false)).toBe(100_000);
    expect(parseLimit("0.50", true)).toBe(0.5);
    expect(parseLimit("$5", true)).toBe(5);
    expect(parseLimit(".5", true)).toBe(0.5);
    expect(parseLimit("0", true)).toBe(0);
    for (const bad of ["0", "-1", "1.5", "ten", "1e3", "99999999999999999999"]) expect(() => parseLimit(bad, false)).toThrow(RangeError);
    // A decimal comma is refused rather than read as a point or dropped: "0,50" is not 50.
    for (const bad of ["-1", "0,50", "five", "1e3", "5 $"]) expect(() => parseLimit(bad, true)).toThrow(RangeError);
  });

  it("round-trips the limits: set on create, unchanged left out, cleared sent as null", () => {
    const values = { ...formValues(), name: "ci", rpm: "60", dailyBudget: "0.50", maxConcurrency: "" };
    expect(createBody(values)).toEqual({ name: "ci", controls: { rpm: 60, daily_budget_usd: 0.5 } });

    const stored = key({ rpm: 60, tpm: 100_000, daily_budget_usd: 0.5, monthly_budget_usd: 0 });
    const initial = formValues(stored);
    expect(initial).toMatchObject({ rpm: "60", tpm: "100000", maxConcurrency: "", dailyTokens: "", dailyBudget: "0.5", monthlyBudget: "0" });
    expect(keyChanges(initial, { ...initial })).toEqual({});
    expect(keyChanges(initial, { ...initial, rpm: "", maxConcurrency: "5", monthlyBudget: "100" }))
      .toEqual({ rpm: null, max_concurrency: 5, monthly_budget_usd: 100 });
  });

  it("says what is wrong before sending, by input", () => {
    expect(formErrors({ ...formValues(), name: "ci" })).toEqual({});
    const errors = formErrors({ ...formValues(), name: " ", rpm: "0", dailyBudget: "0,5", expires: "soon" });
    expect(Object.keys(errors).sort()).toEqual(["dailyBudget", "expires", "name", "rpm"]);
    expect(errors.rpm).toMatch(/whole number/);
    expect(() => createBody({ ...formValues(), name: "ci", tpm: "lots" })).toThrow(RangeError);
  });

  it("places a server error by its field", () => {
    expect(formField("rpm")).toBe("rpm");
    expect(formField("max_concurrency")).toBe("maxConcurrency");
    expect(formField("daily_budget_usd")).toBe("dailyBudget");
    expect(formField("monthly_budget_usd")).toBe("monthlyBudget");
    expect(formField("models[0]")).toBe("models");
    expect(formField("allowed_ips[1]")).toBe("allowedIps");
    expect(formField("expires_at")).toBe("expires");
    expect(formField("name")).toBe("name");
    expect(formField(null)).toBeNull();
    expect(formField("other")).toBeNull();
  });
});

describe("a key's limits", () => {
  const now = Date.parse("2026-05-01T12:00:00Z");

  it("read in a few words each", () => {
    expect(limitsOf(key(), now)).toEqual([]);
    const limits = limitsOf(key({
      models: ["claude-haiku-*"], expires_at: "2026-05-04T12:00:00.000Z", allowed_ips: ["10.0.0.0/8", "192.168.1.2/32"],
    }), now);
    expect(limits.map((l) => l.text)).toEqual(["models: claude-haiku-*", "expires in 3 d", "IPs: 10.0.0.0/8, 192.168.1.2/32"]);
    expect(limitsOf(key({ models: [] }), now)[0].text).toBe("models: none");
  });

  it("put the rates in one line and the budgets in another", () => {
    const limits = limitsOf(key({ rpm: 60, max_concurrency: 5, tpm: 100_000, daily_tokens: 2_000_000, daily_budget_usd: 5, monthly_budget_usd: 100 }), now);
    expect(limits.map((l) => [l.kind, l.text])).toEqual([
      ["rates", "60 rpm · 100k tpm · 5 concurrent · 2M tokens/day"],
      ["budgets", "$5.00/day · $100.00/month"],
    ]);
    expect(limitsOf(key({ max_concurrency: 1 }), now).map((l) => l.text)).toEqual(["1 concurrent"]);
    expect(limitsOf(key({ monthly_budget_usd: 0.25 }), now).map((l) => l.text)).toEqual(["$0.25/month"]);
  });

  it("mark an expired key", () => {
    const expired = key({ expires_at: "2026-04-29T12:00:00.000Z" });
    expect(isExpired(expired, now)).toBe(true);
    expect(limitsOf(expired, now)).toEqual([{ kind: "expires", text: "expired 2 d ago", tone: "bad" }]);
    expect(isExpired(key({ expires_at: "2026-06-01T00:00:00Z" }), now)).toBe(false);
    expect(isExpired(key(), now)).toBe(false);
  });
});

describe("the admin client's keys", () => {
  it("creates with controls and updates with PUT", async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify({ id: 7 }), { status: 200 }));
    const client = new Client("k", fetch as unknown as typeof globalThis.fetch);
    await client.createKey("laptop", { models: ["claude-haiku-*"], owner: "ana", rpm: 60 });
    await client.updateKey(7, { note: "hi", models: null, daily_budget_usd: null });
    const [[url1, init1], [url2, init2]] = fetch.mock.calls as unknown as [string, RequestInit][];
    expect([url1, init1.method, init1.body]).toEqual(["/admin/keys", "POST", '{"name":"laptop","models":["claude-haiku-*"],"owner":"ana","rpm":60}']);
    expect([url2, init2.method, init2.body]).toEqual(["/admin/keys/7", "PUT", '{"note":"hi","models":null,"daily_budget_usd":null}']);
  });
});
