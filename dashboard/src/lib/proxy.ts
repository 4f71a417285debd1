// An account's own egress proxy: the check the account form makes before sending one, what the
// form sends, and how a log's attempt that failed at the proxy reads. Pure.

export const PROXY_SCHEMES = ["http", "https", "socks5", "socks5h"] as const;

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
const AUTHORITY = /^[a-z0-9+.-]+:\/\/([^/?#]+)\/?$/i;

/**
 * Why a typed proxy URL would be refused, or null when it may be sent ("" too: nothing typed).
 * The message never quotes the URL, which may hold a password. The server checks the rest.
 */
export function proxyUrlProblem(text: string): string | null {
  const value = text.trim();
  if (!value) return null;
  const scheme = SCHEME.exec(value)?.[1].toLowerCase() ?? "";
  if (!(PROXY_SCHEMES as readonly string[]).includes(scheme) || /\s/.test(value)) {
    return `A URL starting with ${PROXY_SCHEMES.map((s) => `${s}://`).join(", ")}.`;
  }
  const authority = AUTHORITY.exec(value)?.[1];
  if (authority === undefined) return "Only scheme://[user:password@]host[:port], nothing after.";
  const host = authority.slice(authority.lastIndexOf("@") + 1);
  return !host || host.startsWith(":") ? "The URL has no host." : null;
}

/**
 * What an account form sends for the proxy: `proxy_url` only when the operator typed a new one
 * (trimmed) or asked to remove the stored one (null); otherwise nothing, so the server keeps
 * what it has. The masked value it shows is never sent back.
 */
export function proxyChange(typed: string, remove: boolean): { proxy_url?: string | null } {
  if (remove) return { proxy_url: null };
  const value = typed.trim();
  return value ? { proxy_url: value } : {};
}

const FAILURES: Record<string, string> = {
  proxy_unreachable: "could not be reached",
  proxy_refused: "refused the connection",
  proxy_auth: "refused the login",
};

/** How an attempt that failed at `proxy` reads: "proxy socks5h://10.0.0.5:1080 refused the login". */
export function proxyFailure(errorType: string | null, proxy: string): string {
  const what = (errorType && FAILURES[errorType]) ?? `failed${errorType ? ` (${errorType})` : ""}`;
  return `proxy ${proxy} ${what}`;
}
