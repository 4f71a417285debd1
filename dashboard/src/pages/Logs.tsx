import { useCallback, useEffect, useId, useMemo, useRef, useState } from "react";
import { IconPause, IconPlay, IconRefresh } from "../components/icons";
import { ModelName } from "../components/ModelName";
import { Badge, Button, Card, CopyButton, cx, Empty, ErrorBanner, inputClass, Loading, Modal, PageHeader } from "../components/ui";
import { useSession } from "../context";
import { describeError, type ApiKey, type LogRow } from "../lib/api";
import { compact, formatClock, formatDateTime, formatInt, formatMs, httpTone, relativeTime } from "../lib/format";
import { useDebounced, useNow, usePoll } from "../lib/hooks";
import { errorSource, filtersFromSearch, firstBack, logError, NO_FILTERS, RANGES, searchOf, statusProblem, toQuery, type FilterState } from "../lib/logs";
import { logCost } from "../lib/money";
import { accountLabel, knownNames } from "../lib/names";
import { appendOlder, mergeNewer } from "../lib/paging";
import { proxyFailure } from "../lib/proxy";
import { hrefOf, navigate, rememberSearch, useLocation } from "../lib/router";
import { attemptFailure, failedBefore } from "../lib/tries";

const PAGE_SIZE = 50;
const TAIL_MS = 3000;

export function Logs() {
  const { client } = useSession();
  const accounts = usePoll(() => client.accounts(), [client], 30_000);
  const keys = usePoll(() => client.keys(), [client], 30_000);
  // The model names seen this year, offered as the model filter's choices.
  const models = usePoll(() => client.usage({ group_by: "model", period: "month" }), [client], 300_000);
  const now = useNow(5000);
  const location = useLocation();
  const ids = useId();

  // The filters live in the URL (`/app/logs?key=3&status=429`): a reload, a link or the way
  // back to this page shows the same requests.
  const [filters, setFilters] = useState<FilterState>(() => filtersFromSearch(location.search));
  // Typing in the status or model box waits for a pause; the selects apply at once.
  const typedStatus = useDebounced(filters.status, 350);
  const typedModel = useDebounced(filters.model, 350);
  const applied = useMemo<FilterState>(
    () => ({ account: filters.account, key: filters.key, range: filters.range, status: typedStatus, model: typedModel }),
    [filters.account, filters.key, filters.range, typedStatus, typedModel]);
  const [rows, setRows] = useState<LogRow[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState(false);
  const [fresh, setFresh] = useState<Set<number>>(new Set());
  const [selected, setSelected] = useState<LogRow | null>(null);
  const generation = useRef(0);

  // The query string this page wrote last: another one came from elsewhere (back, a link).
  const written = useRef(location.search);
  useEffect(() => {
    if (location.search === written.current) return;
    written.current = location.search;
    const next = filtersFromSearch(location.search);
    setFilters((current) => JSON.stringify(current) === JSON.stringify(next) ? current : next);
  }, [location.search]);
  useEffect(() => {
    const search = searchOf(applied);
    rememberSearch("logs", search);
    if (search === written.current) return;
    written.current = search;
    navigate(hrefOf("logs") + search, true);
  }, [applied]);

  const statusError = statusProblem(applied.status);
  const statusValid = statusError === null;

  const loadFirst = useCallback(async () => {
    const gen = ++generation.current;
    setLoading(true);
    setError(null);
    try {
      const page = await client.logs(toQuery(applied, Date.now()), null, PAGE_SIZE);
      if (gen !== generation.current) return;
      setRows(page.data);
      setCursor(page.next_cursor);
    } catch (exc) {
      if (gen === generation.current) setError(exc);
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  }, [client, applied]);

  useEffect(() => {
    if (statusValid) {
      void loadFirst();
      return;
    }
    // Nothing is asked with a status the server would refuse: no rows of an earlier filter
    // stay on screen, and an answer still on its way is dropped.
    generation.current++;
    setRows([]);
    setCursor(null);
    setError(null);
    setLoading(false);
  }, [loadFirst, statusValid]);

  // Live tail: fetch the newest page again and put what is new on top.
  useEffect(() => {
    if (!live || !statusValid) return;
    const timer = window.setInterval(async () => {
      if (document.visibilityState !== "visible") return;
      const gen = generation.current;
      try {
        const page = await client.logs(toQuery(applied, Date.now()), null, PAGE_SIZE);
        if (gen !== generation.current) return;
        setError(null);
        setRows((current) => {
          const merged = mergeNewer(current, page.data);
          if (merged.added) setFresh(new Set(page.data.slice(0, merged.added).map((r) => r.id)));
          if (current.length === 0) setCursor(page.next_cursor);
          return merged.rows;
        });
      } catch (exc) {
        if (gen === generation.current) setError(exc);
      }
    }, TAIL_MS);
    return () => window.clearInterval(timer);
  }, [live, client, applied, statusValid]);

  const loadOlder = async () => {
    if (!cursor) return;
    const gen = generation.current;
    setLoadingMore(true);
    try {
      const page = await client.logs(toQuery(applied, Date.now()), cursor, PAGE_SIZE);
      if (gen !== generation.current) return;
      setRows((current) => appendOlder(current, page.data));
      setCursor(page.next_cursor);
    } catch (exc) {
      setError(exc);
    } finally {
      setLoadingMore(false);
    }
  };

  // An account deleted since: the name the row kept, else (a row written before names were
  // kept) the one this browser saw.
  const known = useMemo(() => knownNames(), [accounts.data]);
  const accountName = (id: number | null, logged?: string | null) => accountLabel(id, accounts.data, known, logged);
  const keyName = (id: number | null) => nameOf(keys.data, id);
  const keyOwner = (id: number | null) => keys.data?.find((k) => k.id === id)?.owner ?? null;
  const set = (patch: Partial<FilterState>) => setFilters((f) => ({ ...f, ...patch }));
  const filtered = JSON.stringify(filters) !== JSON.stringify(NO_FILTERS);
  const modelNames = useMemo(
    () => [...new Set((models.data?.data ?? []).map((r) => r.model).filter((m): m is string => !!m))].sort(),
    [models.data]);

  return (
    <>
      <PageHeader
        title="Logs"
        description="Every request on the proxy routes, newest first. Open a row to see each upstream attempt."
        actions={
          <>
            <Button onClick={() => void loadFirst()} disabled={loading || !statusValid}><IconRefresh size={16} /> Refresh</Button>
            <Button variant={live ? "primary" : "secondary"} onClick={() => setLive((v) => !v)} aria-pressed={live}>
              {live ? <><span className="relative flex size-2"><span className="absolute inline-flex size-full animate-ping rounded-full bg-white/70" /><span className="relative inline-flex size-2 rounded-full bg-white" /></span> Live <IconPause size={14} /></> : <><IconPlay size={14} /> Live tail</>}
            </Button>
          </>
        }
      />

      <Card className="mb-4 p-3">
        <div className="grid grid-cols-2 gap-2 md:grid-cols-3 lg:grid-cols-[repeat(5,minmax(0,1fr))_auto]">
          <select aria-label="Account" className={inputClass} value={filters.account} onChange={(e) => set({ account: e.target.value })}>
            <option value="">All accounts</option>
            {(accounts.data ?? []).map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
            {/* One the URL names that the list lacks (deleted, or not loaded yet): still shown. */}
            {filters.account && !accounts.data?.some((a) => String(a.id) === filters.account) && (
              <option value={filters.account}>{accountName(Number(filters.account))}</option>
            )}
          </select>
          <select aria-label="Key" className={inputClass} value={filters.key} onChange={(e) => set({ key: e.target.value })}>
            <option value="">All keys</option>
            {(keys.data ?? []).map((k) => <option key={k.id} value={k.id}>{k.name}{k.revoked_at ? " (revoked)" : ""}</option>)}
            {filters.key && !keys.data?.some((k) => String(k.id) === filters.key) && (
              <option value={filters.key}>{keyName(Number(filters.key))}</option>
            )}
          </select>
          <input aria-label="Status" inputMode="numeric" placeholder="Status, e.g. 429" maxLength={3}
            aria-invalid={!statusValid} aria-describedby={statusValid ? undefined : `${ids}-status`}
            className={cx(inputClass, !statusValid && "ring-red-500 dark:ring-red-500")} value={filters.status} onChange={(e) => set({ status: e.target.value })} />
          <input aria-label="Model" placeholder="Model" className={inputClass} value={filters.model} onChange={(e) => set({ model: e.target.value })}
            spellCheck={false} autoComplete="off" list={`${ids}-models`} />
          <datalist id={`${ids}-models`}>
            {modelNames.map((m) => <option key={m} value={m} />)}
          </datalist>
          <select aria-label="Time range" className={inputClass} value={filters.range} onChange={(e) => set({ range: e.target.value })}>
            {RANGES.map((r) => <option key={r.value} value={r.value}>{r.label}</option>)}
          </select>
          <Button variant="ghost" disabled={!filtered} onClick={() => setFilters(NO_FILTERS)}>Clear</Button>
        </div>
        {!statusValid && (
          <p id={`${ids}-status`} role="alert" className="mt-2 px-1 text-xs text-red-600 dark:text-red-400">{statusError}</p>
        )}
      </Card>

      {error != null && <ErrorBanner className="mb-4" error={`Could not load logs: ${describeError(error)}`} onRetry={() => void loadFirst()} />}

      {/* A first page that failed to load is not "no requests": the banner above says it all. */}
      {error != null && rows.length === 0 && !loading ? null : <Card className="overflow-hidden">
        {!statusValid ? (
          <Empty title="Fix the status filter">Nothing is asked of the server until the status is one it can match.</Empty>
        ) : loading && rows.length === 0 ? <Loading label="Loading logs…" /> : rows.length === 0 ? (
          <Empty title={filtered ? "No requests match these filters" : "No requests yet"}>
            {filtered ? "Widen the time range or clear a filter." : "Requests appear here as soon as a client uses a key. Turn on the live tail to watch them arrive."}
          </Empty>
        ) : (
          <div className={cx("overflow-x-auto transition-opacity", loading && "opacity-60")}>
            <table className="w-full text-sm">
              <thead className="border-b border-zinc-200 bg-zinc-50 text-left text-xs text-zinc-500 dark:border-zinc-800 dark:bg-zinc-900/60 dark:text-zinc-400">
                <tr>
                  <th className="px-3 py-2.5 font-medium sm:px-4">Time</th>
                  <th className="px-2 py-2.5 font-medium sm:px-3">Status</th>
                  <th className="hidden px-3 py-2.5 font-medium lg:table-cell">Error</th>
                  <th className="hidden px-3 py-2.5 font-medium 2xl:table-cell">Route</th>
                  <th className="px-2 py-2.5 font-medium sm:px-3">Model</th>
                  <th className="hidden px-3 py-2.5 font-medium sm:table-cell">Account</th>
                  <th className="hidden px-3 py-2.5 font-medium lg:table-cell">Key</th>
                  <th className="hidden px-3 py-2.5 text-right font-medium md:table-cell">Tokens in / out</th>
                  <th className="hidden px-3 py-2.5 text-right font-medium sm:table-cell">Cost</th>
                  <th className="px-3 py-2.5 text-right font-medium sm:px-3">Latency</th>
                  <th className="hidden px-4 py-2.5 text-right font-medium sm:table-cell">Tries</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                {rows.map((r) => {
                  const failure = logError(r);
                  return (
                    <tr
                      key={r.id}
                      tabIndex={0}
                      data-testid="log-row"
                      onClick={() => setSelected(r)}
                      onKeyDown={(e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); setSelected(r); } }}
                      className={cx("cursor-pointer hover:bg-zinc-50 focus:bg-zinc-50 focus:outline-none dark:hover:bg-zinc-800/40 dark:focus:bg-zinc-800/40", fresh.has(r.id) && "bg-teal-50/70 dark:bg-teal-400/5")}
                    >
                      <td className="px-3 py-2.5 whitespace-nowrap text-zinc-600 tabular sm:px-4 dark:text-zinc-400" title={formatDateTime(r.ts)}>{formatClock(r.ts, now)}</td>
                      <td className="px-2 py-2.5 sm:px-3"><Badge tone={httpTone(r.status)}>{r.status}</Badge></td>
                      {/* Room for the error, on two lines at most; the detail has it whole. */}
                      <td className="hidden px-3 py-2 text-xs text-red-700 lg:table-cell dark:text-red-300">
                        {failure && <span className="line-clamp-2 min-w-60 max-w-80 [overflow-wrap:anywhere]">{failure}</span>}
                      </td>
                      <td className="hidden px-3 py-2.5 font-mono text-xs whitespace-nowrap text-zinc-600 2xl:table-cell dark:text-zinc-400">{r.route}{r.stream && <span className="ml-1.5 rounded bg-zinc-100 px-1 py-px font-sans text-[10px] font-medium text-zinc-500 dark:bg-zinc-800">SSE</span>}</td>
                      <td className="px-2 py-2.5 sm:px-3">{r.model ? <ModelName name={r.model} className="max-w-[8.5rem] sm:max-w-52" /> : <span className="text-zinc-400">—</span>}</td>
                      <td className="hidden px-3 py-2.5 sm:table-cell">
                        <div className="whitespace-nowrap">{accountName(r.account_id, r.account_name)}</div>
                        <FailedTries row={r} accountName={accountName} />
                      </td>
                      <td className="hidden px-3 py-2.5 whitespace-nowrap text-zinc-600 lg:table-cell dark:text-zinc-400">{keyName(r.key_id)}</td>
                      <td className="hidden px-3 py-2.5 text-right whitespace-nowrap tabular text-zinc-600 md:table-cell dark:text-zinc-400">{compact(r.input_tokens)} / {compact(r.output_tokens)}</td>
                      <td className="hidden px-3 py-2.5 text-right whitespace-nowrap tabular sm:table-cell"><Cost row={r} /></td>
                      <td className="px-3 py-2.5 text-right whitespace-nowrap tabular">{formatMs(r.latency_ms)}</td>
                      <td className="hidden px-4 py-2.5 text-right sm:table-cell">
                        <span className={cx("tabular", r.attempts.length > 1 ? "font-semibold text-amber-600 dark:text-amber-400" : "text-zinc-500")}>{r.attempts.length}</span>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        {statusValid && rows.length > 0 && (
          <div className="flex items-center justify-between border-t border-zinc-200 px-4 py-2.5 text-xs text-zinc-500 dark:border-zinc-800 dark:text-zinc-400">
            <span>{formatInt(rows.length)} request{rows.length === 1 ? "" : "s"} shown{live && " · live"}</span>
            {cursor ? (
              <Button size="sm" onClick={loadOlder} busy={loadingMore}>Load older</Button>
            ) : (
              <span>End of the log</span>
            )}
          </div>
        )}
      </Card>}

      <LogDetail row={selected} onClose={() => setSelected(null)} accountName={accountName} keyName={keyName} keyOwner={keyOwner} now={now} />
    </>
  );
}

function nameOf(list: ApiKey[] | undefined, id: number | null): string {
  if (id === null) return "—";
  return list?.find((x) => x.id === id)?.name ?? `#${id}`;
}

function LogDetail({ row, onClose, accountName, keyName, keyOwner, now }: {
  row: LogRow | null; onClose: () => void; accountName: (id: number | null, logged?: string | null) => string; keyName: (id: number | null) => string;
  keyOwner: (id: number | null) => string | null; now: number;
}) {
  return (
    <Modal open={row !== null} title="Request" onClose={onClose} wide>
      {row && (
        <div className="space-y-5 text-sm">
          <div className="flex flex-wrap items-center gap-2">
            <Badge tone={httpTone(row.status)}>{row.status}</Badge>
            <span className="font-mono text-xs">{row.route}</span>
            {row.stream && <Badge tone="info">stream</Badge>}
            {row.error_type && <Badge tone="bad">{row.error_type}</Badge>}
            <span className="ml-auto text-xs text-zinc-500 dark:text-zinc-400">{formatDateTime(row.ts)} · {relativeTime(row.ts, now)}</span>
          </div>

          <dl className="grid grid-cols-2 gap-x-6 gap-y-3 sm:grid-cols-3">
            <Item label="Model">{row.model ?? "—"}</Item>
            <Item label="Account">{accountName(row.account_id, row.account_name)}</Item>
            <Item label="Key">{keyName(row.key_id)}{keyOwner(row.key_id) && <span className="text-zinc-500 dark:text-zinc-400"> · {keyOwner(row.key_id)}</span>}</Item>
            <Item label="Latency">{formatMs(row.latency_ms)}</Item>
            <Item label="First byte">{formatMs(row.ttfb_ms)}</Item>
            <Item label="Client">{row.client ?? "—"}</Item>
            <Item label="Input tokens">{formatInt(row.input_tokens)}</Item>
            <Item label="Output tokens">{formatInt(row.output_tokens)}</Item>
            <Item label="Cache read / write">{formatInt(row.cache_read_tokens)} / {formatInt(row.cache_creation_tokens)}</Item>
            <Item label="Cost"><Cost row={row} explain /></Item>
          </dl>
          {logError(row) && (
            <div className="rounded-lg bg-red-50 px-3.5 py-2.5 text-red-800 ring-1 ring-inset ring-red-600/20 dark:bg-red-500/10 dark:text-red-200 dark:ring-red-400/25">
              <p className="text-xs font-medium">{errorSource(row)}</p>
              <p data-testid="log-error" className="mt-0.5 font-medium [overflow-wrap:anywhere]">{logError(row)}</p>
              <FirstBack row={row} now={now} />
            </div>
          )}
          {row.user_agent && <dl><Item label="User agent"><span className="font-mono text-xs break-all">{row.user_agent}</span></Item></dl>}
          {row.instance && <dl><Item label="Instance"><span className="font-mono text-xs break-all">{row.instance}</span></Item></dl>}
          <div className="flex items-center gap-2">
            <span className="text-xs text-zinc-500 dark:text-zinc-400">Request id</span>
            <code className="min-w-0 truncate font-mono text-xs">{row.request_id}</code>
            <CopyButton text={row.request_id} />
          </div>

          <div>
            <h3 className="mb-2 text-sm font-semibold">Attempts <span className="font-normal text-zinc-500">({row.attempts.length})</span></h3>
            {row.attempts.length === 0 ? (
              <p className="text-sm text-zinc-500 dark:text-zinc-400">No upstream attempt: Kestrel answered this request itself.</p>
            ) : (
              <ol className="space-y-1.5" data-testid="attempts">
                {row.attempts.map((a, i) => (
                  <li key={i} className="flex flex-wrap items-center gap-x-3 gap-y-1 rounded-lg bg-zinc-50 px-3 py-2 ring-1 ring-zinc-200 dark:bg-zinc-800/50 dark:ring-zinc-700/60">
                    <span className="flex size-5 items-center justify-center rounded-full bg-zinc-200 text-[11px] font-semibold text-zinc-700 dark:bg-zinc-700 dark:text-zinc-200">{i + 1}</span>
                    <span className="font-medium">{accountName(a.account_id, a.account_name)}</span>
                    <Badge tone={httpTone(a.status)}>{a.status ?? "no answer"}</Badge>
                    {a.error_type && <span className="text-xs text-zinc-600 dark:text-zinc-400">{a.error_type}</span>}
                    <span className="ml-auto tabular text-xs text-zinc-500 dark:text-zinc-400">{formatMs(a.duration_ms)}</span>
                    {a.proxy && (
                      <p className="basis-full pl-8 text-xs break-all text-red-700 dark:text-red-300">{proxyFailure(a.error_type, a.proxy)}</p>
                    )}
                    {a.message && (
                      <p className="basis-full pl-8 text-xs text-zinc-600 [overflow-wrap:anywhere] dark:text-zinc-400">{a.message}</p>
                    )}
                  </li>
                ))}
              </ol>
            )}
          </div>
        </div>
      )}
    </Modal>
  );
}

/** Under the account that answered: the tries that failed before ("after alpha 429"), or all of
 * them when none answered ("tried alpha 429, beta 529"). Nothing when the first try answered. */
function FailedTries({ row, accountName }: { row: LogRow; accountName: (id: number | null, logged?: string | null) => string }) {
  const failed = failedBefore(row);
  if (failed.length === 0) return null;
  const tries = failed.map((a) => `${accountName(a.account_id, a.account_name)} ${attemptFailure(a)}`).join(", ");
  return (
    <div className="max-w-56 truncate text-xs text-amber-700 dark:text-amber-400" title={tries}>
      {row.account_id === null ? "tried" : "after"} {tries}
    </div>
  );
}

/** When every account was cooling down: which one comes back first, and when (or since when). */
function FirstBack({ row, now }: { row: LogRow; now: number }) {
  const back = firstBack(row);
  if (!back) return null;
  return (
    <p data-testid="first-back" className="mt-1.5 text-xs">
      First back: <span className="font-semibold">{back.account}</span>, at {formatClock(back.at, now)}{" "}
      ({back.at - now >= 5000 ? relativeTime(back.at, now) : `back ${relativeTime(back.at, now)}`})
    </p>
  );
}

/** The request's cost; for a model the price table lacks, "unpriced" in amber, why on hover (or
 * said, with `explain`). */
function Cost({ row, explain = false }: { row: LogRow; explain?: boolean }) {
  const cost = logCost(row);
  return (
    <span title={cost.title} className={cost.unpriced ? "text-amber-600 dark:text-amber-400" : undefined}>
      {cost.text}{explain && cost.unpriced && ": not in the price table"}
    </span>
  );
}

function Item({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
      <dd className="mt-0.5 truncate font-medium">{children}</dd>
    </div>
  );
}
