// The admin API client: one `fetch` wrapper that adds the admin key, turns Kestrel's error
// shape into `ApiError`, and typed calls for each route the dashboard uses.

import { rememberAccounts } from "./names";

export type AccountStatus = "active" | "cooldown" | "disabled" | "invalid" | "exhausted";

export interface UsageWindowRaw {
  utilization?: number | null;
  reset?: string | number | null;
  resets_at?: string | number | null;
  reset_at?: string | number | null;
  status?: string | null;
  window?: string;
  name?: string;
}

/** What the latest upstream answer said of a subscription's usage (OAuth accounts). */
export interface UsageSummary {
  status?: string | null;
  reset_at?: string | null;
  representative_claim?: string | null;
  observed_at?: string | null;
  windows?: Record<string, UsageWindowRaw>;
}

/** One rate limit of an API-key account (`anthropic-ratelimit-<name>-*`). */
export interface Headroom {
  limit: number | null;
  remaining: number | null;
  reset_at: string | null;
}

export type RateLimitName = "requests" | "tokens" | "input_tokens" | "output_tokens";

export type RateLimits = { observed_at: string | null } & Partial<Record<RateLimitName, Headroom>>;

export interface Account {
  id: number;
  name: string;
  type: "api_key" | "oauth";
  base_url: string | null;
  priority: number;
  enabled: boolean;
  status: AccountStatus;
  cooldown_until: string | null;
  consecutive_failures: number;
  last_error: string | null;
  last_used_at: string | null;
  created_at: string | null;
  updated_at: string | null;
  credential_hint: string;
  // Present once OAuth accounts are supported by the server.
  email?: string | null;
  organization?: string | null;
  usage_windows?: UsageSummary | Record<string, UsageWindowRaw> | UsageWindowRaw[] | null;
  /** API-key accounts: what was left of each rate limit at the latest answer that reported it
   * (only the limits reported); null until one did. */
  rate_limits: RateLimits | null;
  /** The account's own egress proxy, password masked (`socks5h://alice:…@10.0.0.5:1080`); null:
   * the server's environment proxy, if any. Absent on servers without per-account proxies. */
  proxy_url?: string | null;
}

export interface AccountInput {
  name?: string;
  api_key?: string;
  base_url?: string | null;
  priority?: number;
  enabled?: boolean;
  /** Write-only: a URL sets the proxy, null removes it, left out keeps it. */
  proxy_url?: string | null;
}

export interface ApiKey {
  id: number;
  name: string;
  prefix: string;
  created_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  /** Model names the key may use (`*` matches any run of characters); null: any model. */
  models: string[] | null;
  /** From then on the key is refused; null: never. */
  expires_at: string | null;
  /** Addresses or networks (CIDR, as the server normalised them); null: from anywhere. */
  allowed_ips: string[] | null;
  owner: string | null;
  note: string | null;
  /** Requests per calendar minute; null: no limit (as for every limit below). */
  rpm: number | null;
  /** Tokens (input, cache writes and output) per calendar minute. */
  tpm: number | null;
  /** Requests in flight at once. */
  max_concurrency: number | null;
  /** Tokens per calendar day in the server's TIME_ZONE. */
  daily_tokens: number | null;
  daily_budget_usd: number | null;
  monthly_budget_usd: number | null;
  /** What the daily and monthly limits count so far (read-only). */
  tokens_today: number;
  spent_today_usd: number;
  spent_this_month_usd: number;
}

/** The numeric limits of a key: whole counts ≥ 1 and dollar budgets ≥ 0; null: no limit. */
export interface KeyLimits {
  rpm?: number | null;
  tpm?: number | null;
  max_concurrency?: number | null;
  daily_tokens?: number | null;
  daily_budget_usd?: number | null;
  monthly_budget_usd?: number | null;
}

/** The limits and labels an operator sets on a key: a field left out stays, null clears it. */
export interface KeyControls extends KeyLimits {
  models?: string[] | null;
  /** RFC 3339 with an offset (the server refuses a time without one). */
  expires_at?: string | null;
  allowed_ips?: string[] | null;
  owner?: string | null;
  note?: string | null;
}

export interface KeyChanges extends KeyControls {
  name?: string;
}

export interface CreatedKey extends ApiKey {
  key: string;
}

export interface Attempt {
  account_id: number;
  status: number | null;
  error_type: string | null;
  duration_ms: number;
  /** The proxy (`scheme://host:port`) when the attempt failed there: `proxy_unreachable`,
   * `proxy_refused` or `proxy_auth`. */
  proxy: string | null;
  /** The upstream's error message; null in rows written before messages were kept. */
  message: string | null;
  /** The account's name when the request was made (kept after a deletion); null in rows
   * written before names were kept. */
  account_name: string | null;
}

export interface LogRow {
  id: number;
  ts: string;
  request_id: string;
  route: string;
  status: number;
  key_id: number | null;
  account_id: number | null;
  /** The serving account's name at the time; null in rows written before names were kept. */
  account_name: string | null;
  model: string | null;
  stream: boolean;
  error_type: string | null;
  /** Why, in words: the upstream's message, or Kestrel's own (for `all_cooling_down`, naming
   * the account back first and when); null in rows written before messages were kept. */
  error_message: string | null;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  /** What it cost at the price table's rates; 0 when `priced` is false. */
  cost_usd: number;
  /** False: the model is not in the price table, so `cost_usd` (0) is not its cost. */
  priced: boolean;
  latency_ms: number;
  ttfb_ms: number | null;
  client: string | null;
  user_agent: string | null;
  attempts: Attempt[];
  /** The Kestrel instance that served it (INSTANCE_NAME); null for older rows. */
  instance: string | null;
}

export interface LogPage {
  data: LogRow[];
  next_cursor: string | null;
}

export interface LogFilters {
  account_id?: number;
  key_id?: number;
  status?: number;
  model?: string;
  since?: string;
  until?: string;
}

export type Window = "1h" | "24h" | "7d";

/** Errors, split by whom they are on: the pool (5xx, Kestrel's own 429/503 when no account
 * could serve, streams broken midway) or the client (bad requests, keys refused...). */
export interface ErrorCounts {
  errors: number;
  pool_errors: number;
  client_errors: number;
}

export interface StatsGroup extends ErrorCounts {
  requests: number;
  errors_by_type: Record<string, number>;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  cost_usd: number;
  p50_latency_ms: number | null;
  p95_latency_ms: number | null;
  p50_ttfb_ms: number | null;
  p95_ttfb_ms: number | null;
}

export interface SeriesPoint extends ErrorCounts {
  start: string;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  cost_usd: number;
  p50_latency_ms: number | null;
  p95_latency_ms: number | null;
  p50_ttfb_ms: number | null;
  p95_ttfb_ms: number | null;
}

/** An account's upstream tries in the window, for any request: served (2xx) or failed. */
export interface AccountTries {
  attempts: number;
  served: number;
  failed: number;
  /** By upstream error type, `http_<status>`, or what broke (`connect`, `timeout`, `proxy_*`). */
  failures_by_type: Record<string, number>;
  last_failure_at: string | null;
}

/** One account's figures: the requests it gave the final answer to, and all its tries. */
export type AccountStats = StatsGroup & AccountTries & { account_id: number | null };

export interface Stats {
  window: Window;
  since: string;
  until: string;
  bucket_seconds: number;
  totals: StatsGroup;
  /** By requests served, then tries: an account that only failed is listed too. */
  accounts: AccountStats[];
  keys: (StatsGroup & { key_id: number | null })[];
  models: (StatsGroup & { model: string | null })[];
  series: SeriesPoint[];
}

export type UsageGroup = "key" | "account" | "model";
export type UsagePeriod = "day" | "month";

export interface UsageQuery {
  group_by: UsageGroup;
  period: UsagePeriod;
  /** YYYY-MM-DD or YYYY-MM, in the server's TIME_ZONE; left out: the server's default. */
  from?: string;
  to?: string;
}

export interface UsageCounts {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  /** Requests for models not in the price table (costed at 0). */
  unpriced: number;
  cost_usd: number;
}

export interface UsageRow extends UsageCounts {
  /** "2026-12-04", or "2026-12" by month. */
  period: string;
  /** The group, by `group_by`: a key or account id, a model name; null: none. */
  key?: number | null;
  account?: number | null;
  model?: string | null;
}

export interface UsageReport {
  group_by: UsageGroup;
  period: UsagePeriod;
  from: string;
  to: string;
  time_zone: string;
  data: UsageRow[];
  totals: UsageCounts;
}

/** `GET /admin/info`: what this Kestrel is and how it is set up (no secrets). */
export interface AdminInfo {
  version: string;
  instance: string;
  database: { engine: string; where: string };
  workers: number | null;
  oauth: boolean;
  egress: Record<string, unknown>;
  settings: Record<string, unknown>;
}

export interface Features {
  oauth: "absent" | "off" | "on";
  message?: string;
  /** The server's own account of itself; absent until `/admin/info` answered. */
  info?: AdminInfo;
}

/** `POST /admin/accounts/{id}/test`: one real upstream request through one account. */
export interface AccountTestResult {
  ok: boolean;
  /** Upstream's status; null when no HTTP answer came. */
  status: number | null;
  error_type: string | null;
  message: string | null;
  /** The proxy it went through (scheme, host and port), if any. */
  proxy: string | null;
  latency_ms: number;
  /** The account after the test (a failure may have changed its status). */
  account: Account;
}

/** What to tell an operator whose server has OAuth off (the server's own wording). */
export const OAUTH_OFF = "OAuth accounts are off: set OAUTH_CLIENT_ID to turn them on (see the README, " +
  "\"Connect a Claude subscription account\")";

export interface OAuthStart {
  authorize_url: string;
  state: string;
}

/** An answer other than 2xx, with Kestrel's `{"error": {type, message, field}}` when given. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly field: string | null;

  constructor(status: number, type: string, message: string, field: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.field = field;
  }
}

/** `fetch` failed before any answer: server down, network gone. */
export class NetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetworkError";
  }
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const error = (body as { error?: { type?: unknown; message?: unknown; field?: unknown } } | null)
    ?.error;
  if (error && typeof error.message === "string") {
    return new ApiError(
      response.status,
      typeof error.type === "string" ? error.type : "error",
      error.message,
      typeof error.field === "string" ? error.field : null,
    );
  }
  const text = response.statusText || `HTTP ${response.status}`;
  return new ApiError(response.status, "http_error", `${text} (${response.status})`);
}

export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

type Fetch = typeof fetch;

export class Client {
  constructor(
    private readonly adminKey: string,
    private readonly fetchImpl: Fetch = (...args) => fetch(...args),
    /** Told of every 401, so the app can sign out. */
    private readonly onUnauthorized: () => void = () => {},
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { "X-Admin-Key": this.adminKey, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (exc) {
      throw new NetworkError(`Kestrel did not answer: ${(exc as Error).message || "network error"}`);
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401) this.onUnauthorized();
      throw error;
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  accounts = () => this.request<{ data: Account[] }>("GET", "/admin/accounts").then((r) => {
    rememberAccounts(r.data); // an account deleted later keeps its name in usage and older logs
    return r.data;
  });
  createAccount = (input: AccountInput) => this.request<Account>("POST", "/admin/accounts", input);
  updateAccount = (id: number, input: AccountInput) =>
    this.request<Account>("PUT", `/admin/accounts/${id}`, input);
  deleteAccount = (id: number) => this.request<void>("DELETE", `/admin/accounts/${id}`);
  resetAccount = (id: number) => this.request<Account>("POST", `/admin/accounts/${id}/reset`);
  testAccount = (id: number) => this.request<AccountTestResult>("POST", `/admin/accounts/${id}/test`);

  keys = () => this.request<{ data: ApiKey[] }>("GET", "/admin/keys").then((r) => r.data);
  createKey = (name: string, controls: KeyControls = {}) =>
    this.request<CreatedKey>("POST", "/admin/keys", { name, ...controls });
  updateKey = (id: number, changes: KeyChanges) => this.request<ApiKey>("PUT", `/admin/keys/${id}`, changes);
  revokeKey = (id: number) => this.request<ApiKey>("DELETE", `/admin/keys/${id}`);

  logs = (filters: LogFilters, cursor: string | null, limit = 50) =>
    this.request<LogPage>("GET", `/admin/logs${query({ ...filters, cursor, limit })}`);
  stats = (window: Window) => this.request<Stats>("GET", `/admin/stats${query({ window })}`);
  usage = (q: UsageQuery) => this.request<UsageReport>("GET", `/admin/usage${query({ ...q })}`);

  oauthStart = (name: string) => this.request<OAuthStart>("POST", "/admin/oauth/start", { name });
  oauthExchange = (state: string, code: string) =>
    this.request<Account>("POST", "/admin/oauth/exchange", { state, code });
  oauthLink = (name: string) => this.request<{ url: string }>("POST", "/admin/oauth/link", { name });

  /**
   * Whether this server connects OAuth accounts, from `GET /admin/info`: "off" when it is not
   * configured (no OAUTH_CLIENT_ID; `message` says what to set), "on" when it is, "absent"
   * when the server could not say (it does not answer `/admin/info`).
   */
  async features(): Promise<Features> {
    let info: AdminInfo;
    try {
      info = await this.request<AdminInfo>("GET", "/admin/info");
    } catch {
      return { oauth: "absent" };
    }
    return info.oauth ? { oauth: "on", info } : { oauth: "off", message: OAUTH_OFF, info };
  }
}

/** Check a key before keeping it: one cheap admin call. */
export async function verifyAdminKey(key: string, fetchImpl: Fetch = (...a) => fetch(...a)): Promise<void> {
  await new Client(key, fetchImpl).accounts();
}

export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429) return `${error.message} — wait a moment and try again.`;
    return error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
