// Pieces that show an account: status badge with countdown, usage window bars, the card.

import type { Account, StatsGroup } from "../lib/api";
import { accountTone, compact, formatSpan, percent, relativeTime, secondsUntil, usageTone } from "../lib/format";
import { usageSummary, usageWindows } from "../lib/usage";
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

/** One line per window for a table cell: label, bar, percentage; the reset time below. */
export function UsageCompact({ account, now }: { account: Account; now: number }) {
  const windows = usageWindows(account);
  if (windows.length === 0) return <span className="text-xs text-zinc-400 dark:text-zinc-500">—</span>;
  return (
    <div className="w-48 space-y-1.5">
      {windows.map((w) => {
        const left = secondsUntil(w.resetsAt, now);
        const tone = usageTone(w.utilization, w.status);
        return (
          <div key={w.name} title={left !== null ? `${w.label} window resets in ${formatSpan(left)}` : undefined}>
            <div className="grid grid-cols-[2.75rem_1fr_2.5rem] items-center gap-2 text-xs">
              <span className="whitespace-nowrap text-zinc-500 dark:text-zinc-400">{w.label}</span>
              <Meter fraction={w.utilization} tone={tone} label={`${w.label} window used`} />
              <span className={cx("text-right tabular font-medium", toneText(tone, "text-zinc-700 dark:text-zinc-300"))}>
                {percent(w.utilization, 0)}
              </span>
            </div>
            {left !== null && <p className="pl-[3.25rem] text-[11px] text-zinc-400 dark:text-zinc-500">resets in {formatSpan(left)}</p>}
          </div>
        );
      })}
    </div>
  );
}

export function UsageBars({ account, now }: { account: Account; now: number }) {
  const windows = usageWindows(account);
  if (windows.length === 0) return null;
  const summary = usageSummary(account);
  return (
    <div className="space-y-2.5">
      {summary.status === "rejected" && (
        <p className="text-xs font-medium text-red-600 dark:text-red-400">Subscription limit reached: Anthropic refuses requests until the window resets.</p>
      )}
      {windows.map((w) => {
        const left = secondsUntil(w.resetsAt, now);
        const tone = usageTone(w.utilization, w.status);
        return (
          <div key={w.name}>
            <div className="mb-1 flex items-baseline justify-between gap-2 text-xs">
              <span className="font-medium text-zinc-700 dark:text-zinc-300">{w.label} window</span>
              <span className="tabular text-zinc-500 dark:text-zinc-400">
                <span className={cx("font-semibold", toneText(tone, "text-zinc-800 dark:text-zinc-200"))}>
                  {percent(w.utilization, 0)}
                </span>{" "}
                used{left !== null && <> · resets in {formatSpan(left)}</>}
              </span>
            </div>
            <Meter fraction={w.utilization} tone={tone} label={`${w.label} window used`} />
          </div>
        );
      })}
      {summary.observedAt !== null && (
        <p className="text-[11px] text-zinc-400 dark:text-zinc-500">As of the last answer, {relativeTime(summary.observedAt, now)}</p>
      )}
    </div>
  );
}

export function AccountCard({ account, stats, now }: { account: Account; stats?: StatsGroup; now: number }) {
  const tone = accountTone(account.status);
  return (
    <Card className={cx("flex flex-col gap-3 p-4", !account.enabled && "opacity-75")}>
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

      <UsageBars account={account} now={now} />

      {account.last_error && account.status !== "active" && (
        <div title={account.last_error} className={cx("rounded-md px-2.5 py-1.5 text-xs",
          tone === "bad" ? "bg-red-50 text-red-800 dark:bg-red-500/10 dark:text-red-200" : "bg-amber-50 text-amber-900 dark:bg-amber-400/10 dark:text-amber-200")}>
          <p className="line-clamp-2 break-words">{account.last_error}</p>
        </div>
      )}

      <dl className="mt-auto grid grid-cols-3 gap-2 border-t border-zinc-100 pt-3 text-xs dark:border-zinc-800">
        <div>
          <dt className="text-zinc-500 dark:text-zinc-400">Requests</dt>
          <dd className="tabular font-semibold text-zinc-900 dark:text-zinc-100">{compact(stats?.requests ?? 0)}</dd>
        </div>
        <div>
          <dt className="text-zinc-500 dark:text-zinc-400">Errors</dt>
          <dd className={cx("tabular font-semibold", (stats?.errors ?? 0) > 0 ? "text-red-600 dark:text-red-400" : "text-zinc-900 dark:text-zinc-100")}>{compact(stats?.errors ?? 0)}</dd>
        </div>
        <div>
          <dt className="text-zinc-500 dark:text-zinc-400">Last used</dt>
          <dd className="font-semibold text-zinc-900 dark:text-zinc-100">{relativeTime(account.last_used_at, now)}</dd>
        </div>
      </dl>
    </Card>
  );
}
