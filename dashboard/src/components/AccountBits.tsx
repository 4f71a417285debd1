// Pieces that show an account: status badge with countdown, headroom bars, failures, the card.

import type { Account, AccountStats } from "../lib/api";
import { accountTone, compact, formatInt, formatSpan, percent, relativeTime, secondsUntil, usageTone } from "../lib/format";
import { headroom, type Gauge } from "../lib/headroom";
import { failureKinds } from "../lib/tries";
import { Badge, Card, cx, Meter, toneText } from "./ui";

const LABELS: Record<string, string> = {
  active: "Active",
  cooldown: "Cooling down",
  disabled: "Disabled",
  invalid: "Invalid",
  exhausted: "Exhausted",
};

export function StatusBadge({ account, now }: { account: Account; now: number }) {
  const left = account.status === "cooldown" ? secondsUntil(account.cooldown_until, now) : null;
  return (
    <Badge tone={accountTone(account.status)} dot>
      {LABELS[account.status] ?? account.status}
      {account.status === "cooldown" && (
        <span className="tabular font-semibold">{left !== null ? formatSpan(left) : "ending"}</span>
      )}
    </Badge>
  );
}

export function TypeBadge({ type }: { type: Account["type"] }) {
  return (
    <span className="shrink-0 rounded border border-zinc-200 px-1.5 py-px text-[11px] font-medium whitespace-nowrap text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
      {type === "oauth" ? "OAuth" : "API key"}
    </span>
  );
}

/** The account's own egress proxy, masked as the server gives it; nothing without one. */
export function ProxyVia({ account, className }: { account: Account; className?: string }) {
  if (!account.proxy_url) return null;
  return (
    <p data-testid="account-proxy" title={`Connects through its own proxy, ${account.proxy_url}`}
      className={cx("truncate text-xs text-zinc-500 dark:text-zinc-400", className)}>
      via <span className="font-mono">{account.proxy_url}</span>
    </p>
  );
}

/** A gauge's figure: what is left of a rate limit ("49 / 50"), or the share of a window used. */
function figure(g: Gauge, count: (n: number) => string): string {
  return g.left ? `${count(g.left.remaining)} / ${count(g.left.limit)}` : percent(g.used, 0);
}

/** One line per gauge for a table cell: label, bar, figure; the reset time below. */
export function HeadroomCompact({ account, now }: { account: Account; now: number }) {
  const { gauges } = headroom(account);
  if (gauges.length === 0) return <span className="text-xs text-zinc-400 dark:text-zinc-500">—</span>;
  return (
    <div className="w-56 space-y-1.5">
      {gauges.map((g) => {
        const left = secondsUntil(g.resetsAt, now);
        const tone = usageTone(g.used, g.status);
        return (
          <div key={g.key} title={`${g.label}: ${figure(g, formatInt)} ${g.left ? "left" : "used"}${left !== null ? `, resets in ${formatSpan(left)}` : ""}`}>
            <div className="grid grid-cols-[3.75rem_1fr_3.75rem] items-center gap-2 text-xs">
              <span className="whitespace-nowrap text-zinc-500 dark:text-zinc-400">{g.short}</span>
              <Meter fraction={g.used} tone={tone} label={`${g.label} used`} />
              <span className={cx("text-right whitespace-nowrap tabular font-medium", toneText(tone, "text-zinc-700 dark:text-zinc-300"))}>
                {figure(g, compact)}
              </span>
            </div>
            {left !== null && <p className="pl-[4.25rem] text-[11px] text-zinc-400 dark:text-zinc-500">resets in {formatSpan(left)}</p>}
          </div>
        );
      })}
    </div>
  );
}

/** The account's headroom as bars: its subscription windows, its rate limits; nothing without. */
export function HeadroomBars({ account, now }: { account: Account; now: number }) {
  const { gauges, observedAt, rejected } = headroom(account);
  if (gauges.length === 0) return null;
  return (
    <div className="space-y-2.5" data-testid="account-headroom">
      {rejected && (
        <p className="text-xs font-medium text-red-600 dark:text-red-400">Subscription limit reached: Anthropic refuses requests until the window resets.</p>
      )}
      {gauges.map((g) => {
        const left = secondsUntil(g.resetsAt, now);
        const tone = usageTone(g.used, g.status);
        return (
          <div key={g.key}>
            <div className="mb-1 flex items-baseline justify-between gap-2 text-xs">
              <span className="font-medium whitespace-nowrap text-zinc-700 dark:text-zinc-300">{g.label}</span>
              <span className="text-right tabular text-zinc-500 dark:text-zinc-400">
                <span className={cx("font-semibold", toneText(tone, "text-zinc-800 dark:text-zinc-200"))}>
                  {figure(g, formatInt)}
                </span>{" "}
                {g.left ? "left" : "used"}{left !== null && <> · <span className="whitespace-nowrap">resets in {formatSpan(left)}</span></>}
              </span>
            </div>
            <Meter fraction={g.used} tone={tone} label={`${g.label} used`} />
          </div>
        );
      })}
      {observedAt !== null && (
        <p className="text-[11px] text-zinc-400 dark:text-zinc-500">As of the last answer, {relativeTime(observedAt, now)}</p>
      )}
    </div>
  );
}

/** How the account's failed tries failed ("429 ×2, 529 ×6") and when the last one was; nothing
 * when none failed. An account that only failed reads as such, not as an idle one. */
export function Failures({ stats, now, className }: { stats?: AccountStats; now: number; className?: string }) {
  if (!stats || stats.failed === 0) return null;
  return (
    <p data-testid="account-failures" className={cx("text-xs text-amber-700 dark:text-amber-400", className)}
      title={`${stats.failed} of ${stats.attempts} tries failed`}>
      <span className="font-medium">{compact(stats.failed)} failed</span>:{" "}
      {failureKinds(stats.failures_by_type).map((kind, i) => <span key={kind} className="whitespace-nowrap">{i > 0 && ", "}{kind}</span>)}
      {stats.last_failure_at && <span className="text-zinc-500 dark:text-zinc-400"> · <span className="whitespace-nowrap">last failure {relativeTime(stats.last_failure_at, now)}</span></span>}
    </p>
  );
}

export function AccountCard({ account, stats, now }: { account: Account; stats?: AccountStats; now: number }) {
  const tone = accountTone(account.status);
  const failed = stats?.failed ?? 0;
  return (
    <Card testId={`account-card-${account.name}`} className={cx("flex flex-col gap-3 p-4", !account.enabled && "opacity-75")}>
      <div>
        <div className="flex items-center justify-between gap-3">
          <h3 className="min-w-0 truncate font-semibold text-zinc-900 dark:text-white" title={account.name}>{account.name}</h3>
          <StatusBadge account={account} now={now} />
        </div>
        <p className="mt-1 flex items-center gap-1.5 truncate text-xs text-zinc-500 dark:text-zinc-400">
          <TypeBadge type={account.type} />
          {account.email ?? <span className="font-mono">{account.credential_hint}</span>}
          {account.organization && <> · {account.organization}</>}
          {" · "}priority {account.priority}
          {!account.enabled && " · disabled"}
        </p>
        <ProxyVia account={account} className="mt-0.5" />
      </div>

      <HeadroomBars account={account} now={now} />

      {account.last_error && account.status !== "active" && (
        <div title={account.last_error} className={cx("rounded-md px-2.5 py-1.5 text-xs",
          tone === "bad" ? "bg-red-50 text-red-800 dark:bg-red-500/10 dark:text-red-200" : "bg-amber-50 text-amber-900 dark:bg-amber-400/10 dark:text-amber-200")}>
          <p className="line-clamp-2 break-words">{account.last_error}</p>
        </div>
      )}

      <div className="mt-auto border-t border-zinc-100 pt-3 dark:border-zinc-800">
        <dl className="grid grid-cols-3 gap-2 text-xs">
          <div>
            <dt className="text-zinc-500 dark:text-zinc-400">Requests</dt>
            <dd className="tabular font-semibold text-zinc-900 dark:text-zinc-100">{compact(stats?.requests ?? 0)}</dd>
          </div>
          <div>
            <dt className="text-zinc-500 dark:text-zinc-400">Failed tries</dt>
            <dd className={cx("tabular font-semibold", failed > 0 ? "text-amber-600 dark:text-amber-400" : "text-zinc-900 dark:text-zinc-100")}>{compact(failed)}</dd>
          </div>
          <div>
            <dt className="text-zinc-500 dark:text-zinc-400">Last used</dt>
            <dd className="font-semibold text-zinc-900 dark:text-zinc-100">{relativeTime(account.last_used_at, now)}</dd>
          </div>
        </dl>
        <Failures stats={stats} now={now} className="mt-2" />
      </div>
    </Card>
  );
}
