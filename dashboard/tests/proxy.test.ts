import { describe, expect, it } from "vitest";
import { proxyChange, proxyFailure, proxyUrlProblem } from "../src/lib/proxy";

describe("proxyUrlProblem", () => {
  it("lets the four schemes through, with or without a login and port", () => {
    for (const url of [
      "http://proxy.corp:3128",
      "https://proxy.corp",
      "socks5://10.0.0.5:1080",
      "socks5h://alice:s3cret@10.0.0.5:1080",
      "SOCKS5H://alice@[::1]:1080/",
      "  http://user:secret@127.0.0.1:9  ",
      "",
      "   ",
    ]) {
      expect(proxyUrlProblem(url), url).toBeNull();
    }
  });

  it("asks for one of the four schemes", () => {
    for (const url of ["proxy.corp:3128", "ftp://proxy.corp", "socks4://10.0.0.5:1080", "http:/x", "http://a b"]) {
      expect(proxyUrlProblem(url), url).toBe("A URL starting with http://, https://, socks5://, socks5h://.");
    }
  });

  it("refuses a path, a query or no host", () => {
    expect(proxyUrlProblem("http://proxy.corp/path")).toMatch(/nothing after/);
    expect(proxyUrlProblem("http://proxy.corp?x=1")).toMatch(/nothing after/);
    expect(proxyUrlProblem("socks5://user:pw@:1080")).toBe("The URL has no host.");
    expect(proxyUrlProblem("socks5://user:pw@")).toBe("The URL has no host.");
  });

  it("never quotes the URL, which may hold a password", () => {
    for (const url of ["ftp://alice:s3cret@host", "http://alice:s3cret@host/x", "http://alice:s3cret@"]) {
      expect(proxyUrlProblem(url)).not.toContain("s3cret");
    }
  });
});

describe("proxyChange", () => {
  it("sends a typed proxy, trimmed", () => {
    expect(proxyChange(" socks5h://a:b@h:1080 ", false)).toEqual({ proxy_url: "socks5h://a:b@h:1080" });
  });

  it("sends null to remove the stored proxy, whatever was typed", () => {
    expect(proxyChange("", true)).toEqual({ proxy_url: null });
    expect(proxyChange("http://h:1", true)).toEqual({ proxy_url: null });
  });

  it("sends nothing when the field is left empty, so the stored proxy stays", () => {
    expect(proxyChange("", false)).toEqual({});
    expect(proxyChange("  ", false)).toEqual({});
    expect("proxy_url" in proxyChange("", false)).toBe(false);
  });
});

describe("proxyFailure", () => {
  it("names the proxy and what went wrong there", () => {
    expect(proxyFailure("proxy_unreachable", "http://127.0.0.1:9")).toBe("proxy http://127.0.0.1:9 could not be reached");
    expect(proxyFailure("proxy_refused", "socks5h://10.0.0.5:1080")).toBe("proxy socks5h://10.0.0.5:1080 refused the connection");
    expect(proxyFailure("proxy_auth", "socks5h://10.0.0.5:1080")).toBe("proxy socks5h://10.0.0.5:1080 refused the login");
  });

  it("falls back to the error type it does not know", () => {
    expect(proxyFailure("proxy_tls", "https://p:443")).toBe("proxy https://p:443 failed (proxy_tls)");
    expect(proxyFailure(null, "https://p:443")).toBe("proxy https://p:443 failed");
  });
});
