import { useEffect, useState } from "react";
import { AccountCard } from "../components/AccountBits";
import { TimeChart, type SeriesDef } from "../components/Chart";
import { Button, Card, Empty, ErrorBanner, Loading, PageHeader, Segmented, Stat } from "../components/ui";
import { useSession } from "../context";
import { describeError, type Client, type Stats, type Window } from "../lib/api";
import { compact, formatMs, percent } from "../lib/format";
import { useNow, usePoll } from "../lib/hooks";
import { formatUsd, usdAxis } from "../lib/money";
import { addDays, localDay } from "../lib/report";
import { hrefOf, navigate } from "../lib/router";
import { autoWindow, chartPoints, costPoints, DAYS, poolErrorRate } from "../lib/series";

const REQUESTS: SeriesDef[] = [
  { key: "ok", label: "Succeeded", fill: "fill-teal-500", stroke: "stroke-teal-500", dot: "bg-teal-500" },
  { key: "pool_errors", label: "Failed", fill: "fill-red-500", stroke: "stroke-red-500", dot: "bg-red-500" },
  // The client's own mistakes: not the pool's failures, so not in its colour.
  { key: "client_errors", label: "Client errors", fill: "fill-zinc-400 dark:fill-zinc-500", stroke: "stroke-zinc-400", dot: "bg-zinc-400 dark:bg-zinc-500" },
];
const ERROR_RATE: SeriesDef[] = [
  { key: "error_rate", label: "Failed by the pool", fill: "fill-red-500", stroke: "stroke-red-500", dot: "bg-red-500" },
];
const TOKENS: SeriesDef[] = [
  { key: "input", label: "Input", fill: "fill-sky-500", stroke: "stroke-sky-500", dot: "bg-sky-500" },
  { key: "output", label: "Output", fill: "fill-violet-500", stroke: "stroke-violet-500", dot: "bg-violet-500" },
  { key: "cache_read", label: "Cache read", fill: "fill-emerald-400", stroke: "stroke-emerald-400", dot: "bg-emerald-400" },
  { key: "cache_write", label: "Cache write", fill: "fill-amber-400", stroke: "stroke-amber-400", dot: "bg-amber-400" },
];
const LATENCY: SeriesDef[] = [
  { key: "p50", label: "p50", fill: "fill-teal-500", stroke: "stroke-teal-500", dot: "bg-teal-500" },
  { key: "p95", label: "p95", fill: "fill-orange-500", stroke: "stroke-orange-500", dot: "bg-orange-500" },
];

const TTFB: SeriesDef[] = [
  { key: "ttfb_p50", label: "p50", fill: "fill-sky-500", stroke: "stroke-sky-500", dot: "bg-sky-500" },
  { key: "ttfb_p95", label: "p95", fill: "fill-violet-500", stroke: "stroke-violet-500", dot: "bg-violet-500" },
];

const COST: SeriesDef[] = [
  { key: "cost", label: "Cost", fill: "fill-teal-500", stroke: "stroke-teal-500", dot: "bg-teal-500" },
];
/** Days in the cost chart, today included. */
const COST_DAYS = 30;

const WINDOW_LABELS: Record<Window, string> = { "1h": "the last hour", "24h": "the last 24 h", "7d": "the last 7 days" };

const WINDOWS: { value: Window; label: string }[] = [
  { value: "1h", label: "1 h" },
  { value: "24h", label: "24 h" },
  { value: "7d", label: "7 d" },
];

/**
 * The window the overview opens with, from where the traffic lies (see `autoWindow`): fresh
 * traffic fills an hour of minute buckets instead of a sliver of a day. A failure: the day.
 */
async function pickWindow(client: Client): Promise<Window> {
  try {
    const [hour, day] = await Promise.all([client.stats("1h"), client.stats("24h")]);
    const counts = { hour: hour.totals.requests, day: day.totals.requests };
    return autoWindow(counts) ?? autoWindow({ ...counts, week: (await client.stats("7d")).totals.requests }) ?? "24h";
  } catch {
    return "24h";
  }
}

export function Overview() {
  const { client } = useSession();
  // The operator's choice, else the one the traffic suggests (null until it is known).
  const [chosen, setChosen] = useState<Window | null>(null);
  const [suggested, setSuggested] = useState<Window | null>(null);
  useEffect(() => {
    let live = true;
    void pickWindow(client).then((w) => { if (live) setSuggested(w); });
    return () => { live = false; };
  }, [client]);
  const window = chosen ?? suggested;
  const stats = usePoll(window ? () => client.stats(window) : null, [client, window], 5000);
  const accounts = usePoll(() => client.accounts(), [client], 3000);
  // Cost by day: the server's days (its TIME_ZONE), from about 30 days ago to its today.
  const costFrom = addDays(localDay(Date.now()), 1 - COST_DAYS);
  const daily = usePoll(() => client.usage({ group_by: "model", period: "day", from: costFrom }), [client, costFrom], 60_000);
  const now = useNow(1000);

  const s = stats.data;
  const shown = s?.window ?? window ?? "24h";
  const points = s ? chartPoints(s.series) : [];
  const list = accounts.data ?? [];
  const serving = list.filter((a) => a.status === "active").length;
  const cooling = list.filter((a) => a.status === "cooldown").length;
  const broken = list.filter((a) => a.status === "invalid" || a.status === "exhausted").length;
  const rate = s ? poolErrorRate(s.totals) : null;
  const tokens = s ? s.totals.input_tokens + s.totals.output_tokens : 0;
  const d = daily.data;
  const costs = d ? costPoints(d.data, d.from, d.to) : [];
  const addAccount = (
    <a href={hrefOf("accounts")} className="font-medium text-teal-700 underline-offset-2 hover:underline dark:text-teal-400"
      onClick={(e) => { if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; e.preventDefault(); navigate(hrefOf("accounts")); }}>
      Add an account
    </a>
  );

  return (
    <>
      <PageHeader
        title="Overview"
        description={<>Traffic through the pool, refreshed every few seconds.</>}
        actions={<Segmented label="Time window" value={window} options={WINDOWS} onChange={setChosen} />}
      />

      {stats.error != null && <ErrorBanner className="mb-4" error={`Could not load statistics: ${describeError(stats.error)}`} onRetry={stats.refresh} />}

      <div className="grid grid-cols-2 gap-3 md:grid-cols-3 xl:grid-cols-6">
        <Stat label="Requests" value={s ? compact(s.totals.requests) : "—"}
          sub={s ? `${compact(s.totals.pool_errors)} failed` : " "} />
        {/* The pool's health: what it failed. The client's own mistakes are said apart, in grey. */}
        <Stat testId="error-rate-stat" label="Error rate" value={rate === null ? "—" : percent(rate)} tone={rate !== null && rate > 0.05 ? "bad" : rate ? "warn" : undefined}
          sub={s ? <span data-testid="client-errors" title={errorsTitle(s.totals)}>{clientErrors(s.totals.client_errors)}</span> : " "} />
        <Stat label="Tokens" value={s ? compact(tokens) : "—"}
          sub={s ? `${compact(s.totals.input_tokens)} in · ${compact(s.totals.output_tokens)} out · ${compact(s.totals.cache_read_tokens)} cached` : " "} />
        <Stat label="Cost" value={s ? formatUsd(s.totals.cost_usd) : "—"} sub={WINDOW_LABELS[shown]} />
        <Stat label="Latency p50" value={s ? formatMs(s.totals.p50_latency_ms) : "—"} sub={s ? `p95 ${formatMs(s.totals.p95_latency_ms)}` : " "} />
        {accounts.data && list.length === 0 ? (
          // Nothing can serve: said as such, with the way to change it (not "0 / 0, all healthy").
          <Stat testId="accounts-stat" label="Accounts" value="None" tone="warn" sub={<>{addAccount} →</>} />
        ) : (
          <Stat testId="accounts-stat" label="Accounts serving" value={accounts.data ? `${serving} / ${list.length}` : "—"}
            tone={accounts.data && serving === 0 ? "bad" : cooling || broken ? "warn" : undefined}
            sub={accounts.data ? [cooling && `${cooling} cooling down`, broken && `${broken} need attention`].filter(Boolean).join(" · ") || "all healthy" : " "} />
        )}
      </div>

      {/* Nothing loaded and nothing loading (the banners say why): no empty charts either. */}
      {(s !== undefined || stats.loading || d !== undefined || daily.loading) && (
        <Card className="mt-4 p-4 sm:p-5">
          <div className="grid gap-x-8 gap-y-7 lg:grid-cols-2">
            {stats.loading ? <div className="lg:col-span-2"><Loading label="Loading charts…" /></div> : s && (
              <>
                <TimeChart title="Requests" window={shown} points={points} series={REQUESTS} kind="bars" format={(v) => compact(v)} minTop={2} />
                <TimeChart title="Error rate" window={shown} points={points} series={ERROR_RATE} kind="lines" format={(v) => percent(v, 0)} max={Math.max(0.05, ...points.map((p) => p.values.error_rate ?? 0)) > 0.5 ? 1 : undefined} />
                <TimeChart title="Latency" window={shown} points={points} series={LATENCY} kind="lines" format={(v) => formatMs(v)} />
                <FirstByte stats={s} points={points} window={shown} />
                <TimeChart title="Tokens" window={shown} points={points} series={TOKENS} kind="bars" format={(v) => compact(v)} minTop={2} />
              </>
            )}
            <div>
              {daily.error != null && <ErrorBanner className="mb-3" error={`Could not load cost by day: ${describeError(daily.error)}`} onRetry={daily.refresh} />}
              {d ? (
                <TimeChart title={`Cost by day, last ${COST_DAYS} days`} window={DAYS} points={costs} series={COST} kind="bars" format={usdAxis}
                  emptyText="Nothing spent in these days" summary={<span className="tabular">total {formatUsd(d.totals.cost_usd)}{d.totals.unpriced > 0 && `, ${compact(d.totals.unpriced)} unpriced`}</span>} />
              ) : daily.loading && !stats.loading ? <Loading label="Loading cost by day…" /> : null}
            </div>
          </div>
        </Card>
      )}

      <div className="mt-8 mb-3 flex items-center justify-between">
        <h2 className="text-base font-semibold text-zinc-900 dark:text-white">Accounts</h2>
        <Button size="sm" variant="ghost" onClick={() => navigate(hrefOf("accounts"))}>Manage accounts →</Button>
      </div>
      {accounts.error != null && <ErrorBanner className="mb-3" error={`Could not load accounts: ${describeError(accounts.error)}`} onRetry={accounts.refresh} />}
      {accounts.loading ? <Card><Loading label="Loading accounts…" /></Card> : accounts.data === undefined ? null : list.length === 0 ? (
        <Card>
          <Empty title="No accounts yet" action={<Button variant="primary" onClick={() => navigate(hrefOf("accounts"))}>Add an account</Button>}>
            Kestrel needs at least one Anthropic account to serve requests.
          </Empty>
        </Card>
      ) : (
        <div className="grid gap-3 md:grid-cols-2 xl:grid-cols-3" data-testid="account-cards">
          {list.map((a) => (
            <AccountCard key={a.id} account={a} now={now} stats={s?.accounts.find((x) => x.account_id === a.id)} />
          ))}
        </div>
      )}
    </>
  );
}

/** Time to first byte over the window, with its p50 and p95 for the whole of it. */
function FirstByte({ stats, points, window }: { stats: Stats; points: ReturnType<typeof chartPoints>; window: string }) {
  const { p50_ttfb_ms: p50, p95_ttfb_ms: p95 } = stats.totals;
  const summary = p50 !== null && <span className="tabular">p50 {formatMs(p50)} · p95 {formatMs(p95)}</span>;
  return (
    <div data-testid="ttfb-chart">
      <TimeChart title="Time to first byte" window={window} points={points} series={TTFB} kind="lines" format={(v) => formatMs(v)} summary={summary} />
    </div>
  );
}

/** The client's own errors, which the error rate leaves out: said apart, so that they are not lost. */
function clientErrors(count: number): string {
  return count === 0 ? "no client errors" : `${compact(count)} client error${count === 1 ? "" : "s"}`;
}

/** The error rate's tooltip: what it leaves out, and every error of the window by type. */
function errorsTitle(totals: Stats["totals"]): string {
  const byType = Object.entries(totals.errors_by_type).sort((a, b) => b[1] - a[1]);
  return ["The share of requests the pool failed. Client errors (bad requests, keys refused or over their limits, clients gone) are not counted.",
    ...byType.map(([type, count]) => `${type}: ${compact(count)}`)].join("\n");
}
