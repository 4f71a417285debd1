import { useState } from "react";
import { IconRefresh } from "../components/icons";
import { ModelName } from "../components/ModelName";
import { Button, Card, cx, Empty, ErrorBanner, inputClass, Loading, PageHeader, Segmented, Stat } from "../components/ui";
import { useSession } from "../context";
import { describeError, type UsageCounts, type UsageGroup, type UsagePeriod, type UsageReport } from "../lib/api";
import { compact, formatInt } from "../lib/format";
import { useDebounced, usePoll } from "../lib/hooks";
import { formatUsd } from "../lib/money";
import { accountLabel } from "../lib/names";
import { byPeriod, defaultRange, groupName, groupOf, periodLabel, rangeLabel } from "../lib/report";

const GROUPS: { value: UsageGroup; label: string }[] = [
  { value: "key", label: "Key" },
  { value: "account", label: "Account" },
  { value: "model", label: "Model" },
];
const PERIODS: { value: UsagePeriod; label: string }[] = [
  { value: "day", label: "Day" },
  { value: "month", label: "Month" },
];

interface UsageState {
  groupBy: UsageGroup;
  period: UsagePeriod;
  from: string;
  to: string;
}

/** Requests, tokens and cost per key, account or model, by day or month, over a range. */
export function Usage() {
  const { client } = useSession();
  const [state, setState] = useState<UsageState>(() => ({ groupBy: "key", period: "day", ...defaultRange("day", Date.now()) }));
  // A date typed digit by digit waits for a pause; the grouping and period apply at once.
  const typed = useDebounced(state, 400);
  const asked = typed.groupBy === state.groupBy && typed.period === state.period ? typed : state;
  const report = usePoll(
    () => client.usage({ group_by: asked.groupBy, period: asked.period, from: asked.from.trim() || undefined, to: asked.to.trim() || undefined }),
    [client, asked.groupBy, asked.period, asked.from, asked.to], 30_000);
  const keys = usePoll(() => client.keys(), [client], 60_000);
  const accounts = usePoll(() => client.accounts(), [client], 60_000);

  const setPeriod = (period: UsagePeriod) => setState((s) => ({ ...s, period, ...defaultRange(period, Date.now()) }));
  const r = report.data;
  const totals = r?.totals;

  return (
    <>
      <PageHeader
        title="Usage"
        description={<>Requests, tokens and cost per key, account or model, by day or by month{r && <>; days as the server counts them ({r.time_zone})</>}.</>}
        actions={<Button onClick={() => void report.refresh()}><IconRefresh size={16} /> Refresh</Button>}
      />

      <Card className="mb-4 p-3">
        <div className="flex flex-wrap items-end gap-3">
          <Segmented label="Group by" value={state.groupBy} options={GROUPS} onChange={(groupBy) => setState((s) => ({ ...s, groupBy }))} />
          <Segmented label="Period" value={state.period} options={PERIODS} onChange={setPeriod} />
          <div className="grid w-full grid-cols-2 gap-2 sm:w-auto">
            {(["from", "to"] as const).map((end) => (
              <label key={end} className="block min-w-0 text-xs font-medium text-zinc-500 dark:text-zinc-400">
                {end === "from" ? "From" : "To"}
                <input
                  type={state.period === "day" ? "date" : "month"}
                  className={cx(inputClass, "mt-1 tabular sm:w-40 dark:[color-scheme:dark]")}
                  value={state[end]}
                  placeholder={state.period === "day" ? "YYYY-MM-DD" : "YYYY-MM"}
                  onChange={(e) => setState((s) => ({ ...s, [end]: e.target.value }))}
                />
              </label>
            ))}
          </div>
        </div>
      </Card>

      {report.error != null && <ErrorBanner className="mb-4" error={`Could not load usage: ${describeError(report.error)}`} onRetry={report.refresh} />}

      <div className="mb-4 grid grid-cols-2 gap-3 md:grid-cols-3">
        <Stat className="col-span-2 md:col-span-1" label="Cost" value={totals ? formatUsd(totals.cost_usd) : "—"}
          tone={totals?.unpriced ? "warn" : undefined}
          sub={totals ? (totals.unpriced ? `${formatInt(totals.unpriced)} unpriced request${totals.unpriced === 1 ? "" : "s"} not counted` : "every request priced") : " "} />
        <Stat label="Requests" value={totals ? compact(totals.requests) : "—"} sub={r ? rangeLabel(r.from, r.to, r.period) : " "} />
        <Stat label="Tokens" value={totals ? compact(totals.input_tokens + totals.output_tokens) : "—"}
          sub={totals ? `${compact(totals.input_tokens)} in · ${compact(totals.output_tokens)} out · ${compact(totals.cache_read_tokens)} cached` : " "} />
      </div>

      <Card className="overflow-hidden">
        {report.loading ? <Loading label="Loading usage…" /> : !r ? null : r.data.length === 0 ? (
          <Empty title="No requests in this range">Widen the range, or come back once clients have used their keys.</Empty>
        ) : (
          <UsageTable report={r} name={(group) => r.group_by === "account" && typeof group === "number"
            ? accountLabel(group, accounts.data) // a deleted account: the name this browser saw
            : groupName(r.group_by, group, keys.data, accounts.data)} />
        )}
      </Card>
    </>
  );
}

const NUMBER = "px-3 py-2.5 text-right whitespace-nowrap tabular";
const TOKENS = cx(NUMBER, "hidden md:table-cell");

/** The figures of one row (a group, or the `total`) after its name. */
function Figures({ counts, total = false }: { counts: UsageCounts; total?: boolean }) {
  return (
    <>
      <td className={NUMBER}>{formatInt(counts.requests)}</td>
      <td className={cx(NUMBER, "md:hidden")} title="input / output tokens">{compact(counts.input_tokens)} / {compact(counts.output_tokens)}</td>
      <td className={TOKENS}>{formatInt(counts.input_tokens)}</td>
      <td className={TOKENS}>{formatInt(counts.output_tokens)}</td>
      <td className={TOKENS}>{formatInt(counts.cache_read_tokens)}</td>
      <td className={TOKENS}>{formatInt(counts.cache_creation_tokens)}</td>
      <td className={cx(NUMBER, !total && "font-medium")}>
        {formatUsd(counts.cost_usd)}
        {counts.unpriced > 0 && <span className="block text-[11px] font-normal text-amber-600 sm:hidden dark:text-amber-400">+{formatInt(counts.unpriced)} unpriced</span>}
      </td>
      <td className={cx(NUMBER, "hidden pr-4 sm:table-cell", counts.unpriced > 0 ? "text-amber-600 dark:text-amber-400" : "text-zinc-400 dark:text-zinc-500")}
        title={counts.unpriced > 0 ? "Requests for models not in the price table: their cost is not counted" : undefined}>
        {formatInt(counts.unpriced)}
      </td>
    </>
  );
}

function UsageTable({ report, name }: { report: UsageReport; name: (group: number | string | null) => string }) {
  const groupLabel = GROUPS.find((g) => g.value === report.group_by)?.label ?? "Group";
  return (
    <div className="overflow-x-auto">
      <table className="w-full text-sm">
        <thead className="border-b border-zinc-200 bg-zinc-50 text-left text-xs text-zinc-500 dark:border-zinc-800 dark:bg-zinc-900/60 dark:text-zinc-400">
          <tr>
            <th className="px-3 py-2.5 font-medium sm:px-4">{groupLabel}</th>
            <th className="px-3 py-2.5 text-right font-medium">Requests</th>
            <th className="px-3 py-2.5 text-right font-medium md:hidden">Tokens</th>
            <th className="hidden px-3 py-2.5 text-right font-medium md:table-cell">Input</th>
            <th className="hidden px-3 py-2.5 text-right font-medium md:table-cell">Output</th>
            <th className="hidden px-3 py-2.5 text-right font-medium md:table-cell">Cache read</th>
            <th className="hidden px-3 py-2.5 text-right font-medium md:table-cell">Cache write</th>
            <th className="px-3 py-2.5 text-right font-medium">Cost</th>
            <th className="hidden px-3 py-2.5 pr-4 text-right font-medium sm:table-cell">Unpriced</th>
          </tr>
        </thead>
        {byPeriod(report.data).map((p) => (
          <tbody key={p.period} className="divide-y divide-zinc-100 border-b border-zinc-200 dark:divide-zinc-800 dark:border-zinc-800">
            <tr className="bg-zinc-50/70 dark:bg-zinc-900/40">
              <th colSpan={9} scope="colgroup" className="px-3 py-2 text-left text-xs font-semibold text-zinc-700 sm:px-4 dark:text-zinc-300">
                <div className="flex items-baseline justify-between gap-3">
                  <span>{periodLabel(p.period)}</span>
                  <span className="tabular font-normal text-zinc-500 dark:text-zinc-400">
                    {formatInt(p.totals.requests)} request{p.totals.requests === 1 ? "" : "s"} · <span className="font-semibold text-zinc-700 dark:text-zinc-300">{formatUsd(p.totals.cost_usd)}</span>
                  </span>
                </div>
              </th>
            </tr>
            {p.rows.map((row) => {
              const group = groupOf(row, report.group_by);
              const label = name(group);
              return (
                <tr key={String(group)} data-testid="usage-row">
                  {report.group_by === "model" && group !== null ? (
                    <td className="px-3 py-2.5 font-medium text-zinc-900 sm:px-4 dark:text-white">
                      <ModelName name={label} className="max-w-[9rem] sm:max-w-64" />
                    </td>
                  ) : (
                    <td className={cx("max-w-[9rem] truncate px-3 py-2.5 sm:max-w-64 sm:px-4", group === null ? "text-zinc-400 italic dark:text-zinc-500" : "font-medium text-zinc-900 dark:text-white")} title={label}>
                      {label}
                    </td>
                  )}
                  <Figures counts={row} />
                </tr>
              );
            })}
          </tbody>
        ))}
        <tfoot className="bg-zinc-50 font-semibold dark:bg-zinc-900/60" data-testid="usage-totals">
          <tr>
            <th scope="row" className="px-3 py-2.5 text-left sm:px-4">Total</th>
            <Figures counts={report.totals} total />
          </tr>
        </tfoot>
      </table>
    </div>
  );
}
