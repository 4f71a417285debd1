import { describe, expect, it } from "vitest";
import { describeTest, testFailed } from "../src/lib/accountTest";

const base = { ok: false, status: null, error_type: null, message: null, proxy: null, latency_ms: 0 };

describe("account test results", () => {
  it("says OK with the status and how long it took", () => {
    expect(describeTest({ ...base, ok: true, status: 200, latency_ms: 123.4 })).toEqual({ ok: true, text: "OK · 200 in 123 ms" });
    expect(describeTest({ ...base, ok: true, status: 200, latency_ms: 1240 }).text).toBe("OK · 200 in 1.24 s");
  });

  it("names upstream's status, error type and message", () => {
    expect(describeTest({ ...base, status: 401, error_type: "authentication_error", message: "invalid x-api-key" }))
      .toEqual({ ok: false, text: "Failed · 401 authentication_error: invalid x-api-key" });
    expect(describeTest({ ...base, status: 500 }).text).toBe("Failed · 500");
  });

  it("names the proxy when the request went through one", () => {
    expect(describeTest({ ...base, error_type: "proxy_unreachable", proxy: "http://127.0.0.1:9" }).text)
      .toBe("Failed · proxy_unreachable via http://127.0.0.1:9");
  });

  it("copes with no answer at all and shortens long messages", () => {
    expect(describeTest({ ...base, error_type: "test_timeout", message: "no answer within 8 s" }).text)
      .toBe("Failed · test_timeout: no answer within 8 s");
    expect(describeTest(base).text).toBe("Failed · no answer");
    const text = describeTest({ ...base, status: 400, error_type: "invalid_request_error", message: "x".repeat(500) }).text;
    expect(text.endsWith("x…")).toBe(true);
    expect(text.length).toBeLessThan(200);
    expect(testFailed("Kestrel did not answer")).toEqual({ ok: false, text: "Failed · Kestrel did not answer" });
  });
});
