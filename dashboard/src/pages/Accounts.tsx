import { useState } from "react";
import { Failures, HeadroomBars, HeadroomCompact, ProxyVia, StatusBadge, TypeBadge } from "../components/AccountBits";
import { IconEdit, IconLink, IconPlay, IconPlus, IconRefresh, IconTrash } from "../components/icons";
import { useNotice } from "../components/Notice";
import { Button, Card, Confirm, cx, Empty, ErrorBanner, Loading, PageHeader, Toggle } from "../components/ui";
import { AccountForm, OAuthConnect } from "./AccountForms";
import { useSession } from "../context";
import { describeTest, testFailed, type TestSummary } from "../lib/accountTest";
import { describeError, type Account } from "../lib/api";
import { compact, relativeTime } from "../lib/format";
import { useNow, usePoll } from "../lib/hooks";

export function Accounts() {
  const { client, features } = useSession();
  const oauth = features.oauth !== "absent";
  const accounts = usePoll(() => client.accounts(), [client], 3000);
  // What each account served and how its tries failed, over the last day.
  const stats = usePoll(() => client.stats("24h"), [client], 10_000);
  const statsOf = (a: Account) => stats.data?.accounts.find((x) => x.account_id === a.id);
  // Unknown until the stats have loaded: not "no requests".
  const served = (a: Account) => stats.data ? requestCount(statsOf(a)?.requests ?? 0) : "—";
  const now = useNow(1000);
  const [notice, notify] = useNotice();
  const [adding, setAdding] = useState(false);
  const [connecting, setConnecting] = useState(false);
  const [editing, setEditing] = useState<Account | null>(null);
  const [deleting, setDeleting] = useState<Account | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  // Account tests run side by side (each can take seconds): which run, and what each found.
  const [testing, setTesting] = useState<ReadonlySet<number>>(() => new Set());
  const [tested, setTested] = useState<Record<number, TestSummary>>({});

  const test = async (a: Account) => {
    setTesting((ids) => new Set(ids).add(a.id));
    setTested(({ [a.id]: _, ...rest }) => rest);
    let summary: TestSummary;
    try {
      const result = await client.testAccount(a.id);
      summary = describeTest(result);
      accounts.update((list) => list?.map((x) => x.id === result.account.id ? result.account : x));
    } catch (exc) {
      summary = testFailed(describeError(exc));
    }
    setTested((all) => ({ ...all, [a.id]: summary }));
    setTesting((ids) => { const next = new Set(ids); next.delete(a.id); return next; });
  };

  const testResult = (a: Account, className?: string) => {
    const summary = tested[a.id];
    if (!summary || testing.has(a.id)) return null;
    return (
      <p role="status" data-testid={`account-test-${a.name}`} title={summary.text}
        className={cx("truncate text-xs", summary.ok ? "text-emerald-700 dark:text-emerald-400" : "text-red-600 dark:text-red-400", className)}>
        {summary.text}
      </p>
    );
  };

  const act = async (label: string, run: () => Promise<unknown>, done: string) => {
    setBusy(label);
    setActionError(null);
    try {
      await run();
      notify(done);
      await accounts.refresh();
      return true;
    } catch (exc) {
      setActionError(describeError(exc));
      return false;
    } finally {
      setBusy(null);
    }
  };

  const list = accounts.data ?? [];
  const showHeadroom = list.some((a) => a.usage_windows || a.rate_limits);

  const actions = (a: Account) => (
    <div className="flex items-center justify-end gap-1">
      <Button size="sm" variant="ghost" busy={testing.has(a.id)} onClick={() => void test(a)}
        aria-label={`Test ${a.name}`} title="Send one test request upstream through this account">
        {!testing.has(a.id) && <IconPlay size={15} />}<span className="sr-only 2xl:not-sr-only">{testing.has(a.id) ? "Testing…" : "Test"}</span>
      </Button>
      <Button size="sm" variant="ghost" onClick={() => setEditing(a)} aria-label={`Edit ${a.name}`} title="Edit">
        <IconEdit size={15} /><span className="sr-only 2xl:not-sr-only">Edit</span>
      </Button>
      <Button size="sm" variant="ghost" busy={busy === `reset-${a.id}`}
        disabled={a.status === "active" && a.consecutive_failures === 0}
        onClick={() => act(`reset-${a.id}`, () => client.resetAccount(a.id), `Account “${a.name}” reset`)}
        aria-label={`Reset ${a.name}`} title="Clear cooldown and failures">
        <IconRefresh size={15} /><span className="sr-only 2xl:not-sr-only">Reset</span>
      </Button>
      <Button size="sm" variant="ghost" onClick={() => setDeleting(a)} aria-label={`Delete ${a.name}`} title="Delete"
        className="text-red-600 hover:text-red-700 dark:text-red-400 dark:hover:text-red-300">
        <IconTrash size={15} /><span className="sr-only 2xl:not-sr-only">Delete</span>
      </Button>
    </div>
  );

  const enabledToggle = (a: Account) => (
    <Toggle label={`${a.name} enabled`} checked={a.enabled} disabled={busy === `enable-${a.id}`}
      onChange={(value) => act(`enable-${a.id}`, () => client.updateAccount(a.id, { enabled: value }),
        `Account “${a.name}” ${value ? "enabled" : "disabled"}`)} />
  );

  return (
    <>
      <PageHeader
        title="Accounts"
        description="Anthropic accounts in the pool. Higher priority is tried first; a failing account cools down and the next one serves."
        actions={
          <>
            {oauth && (
              <Button onClick={() => setConnecting(true)}><IconLink size={16} /> Connect Claude account</Button>
            )}
            <Button variant="primary" onClick={() => setAdding(true)}><IconPlus size={16} /> Add API-key account</Button>
          </>
        }
      />
      {actionError && <ErrorBanner className="mb-4" error={actionError} />}
      {accounts.error != null && <ErrorBanner className="mb-4" error={`Could not load accounts: ${describeError(accounts.error)}`} onRetry={accounts.refresh} />}

      {/* Never loaded (the banner above says why): no list, and no "no accounts yet" either. */}
      {accounts.data === undefined && !accounts.loading ? null : <Card className="overflow-hidden">
        {accounts.loading ? <Loading label="Loading accounts…" /> : list.length === 0 ? (
          <Empty title="No accounts yet" action={<Button variant="primary" onClick={() => setAdding(true)}><IconPlus size={16} /> Add API-key account</Button>}>
            Add an Anthropic API key{oauth ? " or connect a Claude subscription" : ""} and Kestrel starts serving requests with it.
          </Empty>
        ) : (
          <>
            {/* Wide screens: a table */}
            <div className="hidden overflow-x-auto md:block">
            <table className="w-full text-sm">
              <thead className="border-b border-zinc-200 bg-zinc-50 text-left text-xs font-medium text-zinc-500 dark:border-zinc-800 dark:bg-zinc-900/60 dark:text-zinc-400">
                <tr>
                  <th className="px-4 py-2.5 font-medium">Account</th>
                  <th className="px-3 py-2.5 font-medium">Status</th>
                  {showHeadroom && <th className="px-3 py-2.5 font-medium">Headroom</th>}
                  <th className="px-3 py-2.5 text-right font-medium">Priority</th>
                  <th className="hidden px-3 py-2.5 font-medium 2xl:table-cell">Upstream</th>
                  <th className="px-3 py-2.5 font-medium whitespace-nowrap">Last used</th>
                  <th className="px-3 py-2.5 font-medium whitespace-nowrap">Last 24 h</th>
                  <th className="px-3 py-2.5 font-medium">Enabled</th>
                  <th className="px-4 py-2.5"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                {list.map((a) => (
                  <tr key={a.id} data-testid={`account-row-${a.name}`} className="align-top hover:bg-zinc-50/70 dark:hover:bg-zinc-800/30">
                    <td className="px-4 py-3">
                      <div className="font-medium whitespace-nowrap text-zinc-900 dark:text-white">{a.name}</div>
                      <div className="mt-1 flex items-center gap-1.5 text-xs whitespace-nowrap text-zinc-500 dark:text-zinc-400">
                        <TypeBadge type={a.type} />
                        {a.email ? <>{a.email}{a.organization && <> · {a.organization}</>}</> : <span className="font-mono">{a.credential_hint}</span>}
                      </div>
                      <ProxyVia account={a} className="mt-1 max-w-72" />
                    </td>
                    <td className="px-3 py-3">
                      <StatusBadge account={a} now={now} />
                      {a.consecutive_failures > 0 && (
                        <div className="mt-1 text-xs text-zinc-500 dark:text-zinc-400">{a.consecutive_failures} failure{a.consecutive_failures === 1 ? "" : "s"} in a row</div>
                      )}
                      {a.last_error && a.status !== "active" && (
                        <div className="mt-1 max-w-48 truncate text-xs text-red-600 dark:text-red-400" title={a.last_error}>{a.last_error}</div>
                      )}
                    </td>
                    {showHeadroom && <td className="px-3 py-3"><HeadroomCompact account={a} now={now} /></td>}
                    <td className="px-3 py-3 text-right tabular">{a.priority}</td>
                    <td className="hidden max-w-48 truncate px-3 py-3 text-xs text-zinc-600 2xl:table-cell dark:text-zinc-400" title={a.base_url ?? undefined}>
                      {a.base_url ? <span className="font-mono">{a.base_url}</span> : <span className="text-zinc-400 dark:text-zinc-500">Default</span>}
                    </td>
                    <td className="px-3 py-3 whitespace-nowrap text-zinc-600 dark:text-zinc-400" title={a.last_used_at ?? undefined}>{relativeTime(a.last_used_at, now)}</td>
                    <td className="px-3 py-3">
                      <div className="whitespace-nowrap text-zinc-700 dark:text-zinc-300">{served(a)}</div>
                      <Failures stats={statsOf(a)} now={now} className="mt-1 w-44" />
                    </td>
                    <td className="px-3 py-3">{enabledToggle(a)}</td>
                    <td className="px-4 py-2">
                      {actions(a)}
                      {testResult(a, "mt-1 ml-auto max-w-72 text-right")}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            </div>

            {/* Phones: a list of cards */}
            <ul className="divide-y divide-zinc-100 md:hidden dark:divide-zinc-800">
              {list.map((a) => (
                <li key={a.id} className="space-y-2.5 p-4">
                  <div className="flex items-start justify-between gap-3">
                    <div className="min-w-0">
                      <div className="flex items-center gap-2">
                        <span className="truncate font-medium text-zinc-900 dark:text-white">{a.name}</span>
                        <TypeBadge type={a.type} />
                      </div>
                      <div className="mt-0.5 truncate text-xs text-zinc-500 dark:text-zinc-400">
                        {a.email ?? <span className="font-mono">{a.credential_hint}</span>} · priority {a.priority} · used {relativeTime(a.last_used_at, now)}
                      </div>
                      <ProxyVia account={a} className="mt-0.5" />
                    </div>
                    <StatusBadge account={a} now={now} />
                  </div>
                  <HeadroomBars account={a} now={now} />
                  <div className="text-xs text-zinc-600 dark:text-zinc-400">
                    Last 24 h: {served(a)}
                    <Failures stats={statsOf(a)} now={now} className="mt-0.5" />
                  </div>
                  {a.last_error && a.status !== "active" && (
                    <p className="line-clamp-2 text-xs text-red-600 dark:text-red-400">{a.last_error}</p>
                  )}
                  <div className="flex items-center justify-between">
                    <span className="flex items-center gap-2 text-xs text-zinc-600 dark:text-zinc-400">{enabledToggle(a)} Enabled</span>
                    {actions(a)}
                  </div>
                  {testResult(a)}
                </li>
              ))}
            </ul>
          </>
        )}
      </Card>}

      <AccountForm
        open={adding}
        onClose={() => setAdding(false)}
        onSaved={async (a) => { setAdding(false); notify(`Account “${a.name}” added`); await accounts.refresh(); }}
      />
      <AccountForm
        open={editing !== null}
        account={editing ?? undefined}
        onClose={() => setEditing(null)}
        onSaved={async (a) => { setEditing(null); notify(`Account “${a.name}” saved`); await accounts.refresh(); }}
      />
      {oauth && (
        <OAuthConnect
          open={connecting}
          onClose={() => setConnecting(false)}
          onConnected={async (a) => { setConnecting(false); notify(`Account “${a.name}” connected`); await accounts.refresh(); }}
        />
      )}
      <Confirm
        open={deleting !== null}
        title="Delete account"
        confirmLabel="Delete account"
        busy={busy === "delete"}
        error={deleting ? actionError : null}
        onClose={() => { setDeleting(null); setActionError(null); }}
        onConfirm={async () => {
          if (!deleting) return;
          const name = deleting.name;
          if (await act("delete", () => client.deleteAccount(deleting.id), `Account “${name}” deleted`)) setDeleting(null);
        }}
      >
        Delete <strong className="font-semibold text-zinc-900 dark:text-white">{deleting?.name}</strong>? Its stored credential is erased and
        it stops serving requests at once. Request logs that mention it are kept.
      </Confirm>
      {notice}
    </>
  );
}

/** Requests an account gave the final answer to: "12 requests", "1 request", "no requests". */
function requestCount(requests: number): string {
  return requests === 0 ? "no requests" : `${compact(requests)} request${requests === 1 ? "" : "s"}`;
}
