import { useState } from "react";
import { IconEdit, IconKey, IconPlus } from "../components/icons";
import { useNotice } from "../components/Notice";
import { Badge, Button, Card, Confirm, CopyButton, cx, Empty, ErrorBanner, Loading, Meter, Modal, PageHeader, toneText } from "../components/ui";
import { useSession } from "../context";
import { describeError, type ApiKey, type CreatedKey } from "../lib/api";
import { compact, formatDateTime, percent, relativeTime } from "../lib/format";
import { useNow, usePoll } from "../lib/hooks";
import { isExpired, limitsOf } from "../lib/keys";
import { formatUsd, limitTone, usedFraction } from "../lib/money";
import { snippets } from "../lib/snippets";
import { KeyForm } from "./KeyForms";

export function Keys() {
  const { client } = useSession();
  const keys = usePoll(() => client.keys(), [client], 5000);
  const now = useNow(5000);
  const [notice, notify] = useNotice();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [editing, setEditing] = useState<ApiKey | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const list = keys.data ?? [];
  const active = list.filter((k) => !k.revoked_at);
  const revoked = list.filter((k) => k.revoked_at);

  const revoke = async () => {
    if (!revoking) return;
    setBusy(true);
    setError(null);
    try {
      await client.revokeKey(revoking.id);
      notify(`Key “${revoking.name}” revoked`);
      setRevoking(null);
      await keys.refresh();
    } catch (exc) {
      setError(describeError(exc));
    } finally {
      setBusy(false);
    }
  };

  const status = (k: ApiKey) => k.revoked_at
    ? <Badge tone="muted">Revoked {relativeTime(k.revoked_at, now)}</Badge>
    : isExpired(k, now)
      ? <Badge tone="bad" dot>Expired</Badge>
      : <Badge tone="good" dot>Active</Badge>;

  const limits = (k: ApiKey) => {
    const items = limitsOf(k, now);
    if (items.length === 0) return <span className="text-zinc-400 dark:text-zinc-500">No limits</span>;
    return (
      <div className="flex min-w-0 flex-wrap gap-1">
        {items.map((l) => (
          <Badge key={l.kind} tone={k.revoked_at ? "muted" : l.tone} className="max-w-full min-w-0">
            <span className="min-w-0 truncate" title={l.kind === "expires" ? formatDateTime(k.expires_at) : l.text}>{l.text}</span>
          </Badge>
        ))}
      </div>
    );
  };

  const note = (k: ApiKey) => k.note
    ? <div className="mt-0.5 max-w-56 truncate text-xs font-normal text-zinc-500 dark:text-zinc-400" title={k.note}>{k.note}</div>
    : null;

  const actions = (k: ApiKey, wide: boolean) => !k.revoked_at && (
    <div className="flex items-center justify-end gap-1">
      <Button size="sm" variant="ghost" onClick={() => setEditing(k)} aria-label={`Edit ${k.name}`} title="Edit">
        <IconEdit size={15} />{wide && "Edit"}
      </Button>
      <Button size="sm" variant="ghost" className="text-red-600 hover:text-red-700 dark:text-red-400" onClick={() => { setError(null); setRevoking(k); }} aria-label={`Revoke ${k.name}`}>
        Revoke
      </Button>
    </div>
  );

  const rows = [...active, ...revoked];

  return (
    <>
      <PageHeader
        title="Keys"
        description="Client keys for Claude Code, SDKs and tools. Kestrel stores only a hash: a key is shown once, when it is created."
        actions={<Button variant="primary" onClick={() => setCreating(true)}><IconPlus size={16} /> Create key</Button>}
      />
      {keys.error != null && <ErrorBanner className="mb-4" error={`Could not load keys: ${describeError(keys.error)}`} onRetry={keys.refresh} />}

      {/* Never loaded (the banner above says why): no list to show, and no "no keys yet" either. */}
      {keys.data === undefined && !keys.loading ? null : <Card className="overflow-hidden">
        {keys.loading ? <Loading label="Loading keys…" /> : rows.length === 0 ? (
          <Empty title="No client keys yet" action={<Button variant="primary" onClick={() => setCreating(true)}><IconPlus size={16} /> Create key</Button>}>
            Clients authenticate to Kestrel with a key of their own; create one per person or machine so you can revoke it alone.
          </Empty>
        ) : (
          <>
            <table className="hidden w-full text-sm md:table">
              <thead className="border-b border-zinc-200 bg-zinc-50 text-left text-xs text-zinc-500 dark:border-zinc-800 dark:bg-zinc-900/60 dark:text-zinc-400">
                <tr>
                  <th className="px-4 py-2.5 font-medium">Name</th>
                  <th className="px-3 py-2.5 font-medium">Key</th>
                  <th className="px-3 py-2.5 font-medium">Owner</th>
                  <th className="px-3 py-2.5 font-medium">Limits</th>
                  <th className="px-3 py-2.5 font-medium">Spend</th>
                  <th className="px-3 py-2.5 font-medium">Status</th>
                  <th className="hidden px-3 py-2.5 font-medium xl:table-cell">Created</th>
                  <th className="px-3 py-2.5 font-medium whitespace-nowrap">Last used</th>
                  <th className="px-4 py-2.5"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                {rows.map((k) => (
                  <tr key={k.id} data-testid={`key-row-${k.name}`} className={k.revoked_at ? "text-zinc-400 dark:text-zinc-500" : ""}>
                    <td className="px-4 py-3 font-medium whitespace-nowrap text-zinc-900 dark:text-white">{k.name}{note(k)}</td>
                    <td className="px-3 py-3 font-mono text-xs whitespace-nowrap">{k.prefix}…</td>
                    <td className="px-3 py-3">
                      <div className={cx("max-w-40 truncate", !k.owner && "text-zinc-400 dark:text-zinc-500")} title={k.owner ?? undefined}>{k.owner ?? "—"}</div>
                    </td>
                    <td className="px-3 py-3"><div className="max-w-64">{limits(k)}</div></td>
                    <td className="px-3 py-3"><KeySpend apiKey={k} className="w-40 lg:w-44" /></td>
                    <td className="px-3 py-3">{status(k)}</td>
                    <td className="hidden px-3 py-3 whitespace-nowrap text-zinc-600 xl:table-cell dark:text-zinc-400" title={formatDateTime(k.created_at)}>{relativeTime(k.created_at, now)}</td>
                    <td className="px-3 py-3 whitespace-nowrap text-zinc-600 dark:text-zinc-400" title={k.last_used_at ? formatDateTime(k.last_used_at) : undefined}>{relativeTime(k.last_used_at, now)}</td>
                    <td className="px-4 py-2 text-right">{actions(k, true)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <ul className="divide-y divide-zinc-100 md:hidden dark:divide-zinc-800">
              {rows.map((k) => (
                <li key={k.id} className="flex items-center justify-between gap-3 p-4">
                  <div className="min-w-0">
                    <div className="flex items-center gap-2"><span className="truncate font-medium">{k.name}</span>{status(k)}</div>
                    <div className="mt-0.5 truncate text-xs text-zinc-500 dark:text-zinc-400">
                      <span className="font-mono">{k.prefix}…</span>{k.owner && <> · {k.owner}</>} · used {relativeTime(k.last_used_at, now)}
                    </div>
                    {note(k)}
                    {limitsOf(k, now).length > 0 && <div className="mt-1.5">{limits(k)}</div>}
                    <KeySpend apiKey={k} className="mt-2 w-56 max-w-full" />
                  </div>
                  {actions(k, false)}
                </li>
              ))}
            </ul>
          </>
        )}
      </Card>}

      <KeyForm open={creating} onClose={() => setCreating(false)}
        onCreated={async (k) => { setCreating(false); setCreated(k); await keys.refresh(); }} />
      <KeyForm open={editing !== null} apiKey={editing} onClose={() => setEditing(null)}
        onSaved={async (k) => { setEditing(null); notify(`Key “${k.name}” saved`); await keys.refresh(); }} />
      <ShowKey created={created} onClose={() => setCreated(null)} />
      <Confirm open={revoking !== null} title="Revoke key" confirmLabel="Revoke key" busy={busy} error={error}
        onClose={() => setRevoking(null)} onConfirm={revoke}>
        Revoke <strong className="font-semibold text-zinc-900 dark:text-white">{revoking?.name}</strong> (<span className="font-mono">{revoking?.prefix}…</span>)?
        Every client using it is refused from its next request. This cannot be undone.
      </Confirm>
      {notice}
    </>
  );
}

/** What a key has spent today and this month, each with a bar against its budget when it has
 * one; and its tokens today against a daily token limit. */
function KeySpend({ apiKey: k, className }: { apiKey: ApiKey; className?: string }) {
  return (
    <div className={cx("space-y-1.5", className)} data-testid={`key-spend-${k.name}`}>
      <Used label="Today" used={k.spent_today_usd ?? 0} limit={k.daily_budget_usd} format={formatUsd} what="daily budget" />
      <Used label="This month" used={k.spent_this_month_usd ?? 0} limit={k.monthly_budget_usd} format={formatUsd} what="monthly budget" />
      {k.daily_tokens != null && (
        <Used label="Tokens today" used={k.tokens_today ?? 0} limit={k.daily_tokens} format={compact} what="daily token limit" />
      )}
    </div>
  );
}

function Used({ label, used, limit, format, what }: {
  label: string; used: number; limit: number | null | undefined; format: (n: number) => string; what: string;
}) {
  const fraction = usedFraction(used, limit);
  const tone = fraction === null ? undefined : limitTone(fraction);
  return (
    <div className="text-xs" title={fraction === null ? undefined : `${percent(fraction, 0)} of the ${what}`}>
      <div className="flex items-baseline justify-between gap-2 whitespace-nowrap">
        <span className="text-zinc-500 dark:text-zinc-400">{label}</span>
        <span className="tabular">
          <span className={cx("font-medium", toneText(tone, "text-zinc-800 dark:text-zinc-200"))}>{format(used)}</span>
          {limit != null && <span className="text-zinc-500 dark:text-zinc-400"> / {format(limit)}</span>}
        </span>
      </div>
      {fraction !== null && tone && <Meter className="mt-1" fraction={fraction} tone={tone} label={`${label}: share of the ${what} used`} />}
    </div>
  );
}

function ShowKey({ created, onClose }: { created: CreatedKey | null; onClose: () => void }) {
  const [tab, setTab] = useState("claude-code");
  const origin = window.location.origin;
  const list = created ? snippets(origin, created.key) : [];
  const current = list.find((s) => s.id === tab) ?? list[0];
  return (
    // Closed only on purpose: an Escape or a stray click must not lose a key shown once.
    <Modal open={created !== null} title={`Key “${created?.name ?? ""}” created`} onClose={onClose} wide dismissible={false}
      footer={<Button variant="primary" onClick={onClose}>I have copied it, close</Button>}>
      {created && (
        <div className="space-y-5">
          <div className="flex items-start gap-2.5 rounded-lg bg-amber-50 px-3.5 py-2.5 text-sm text-amber-900 ring-1 ring-inset ring-amber-600/20 dark:bg-amber-400/10 dark:text-amber-200 dark:ring-amber-400/25">
            <IconKey size={16} className="mt-0.5 shrink-0" />
            Copy the key now: Kestrel keeps only its hash and cannot show it again.
          </div>
          <div className="flex items-center gap-2">
            <code data-testid="new-key" className="min-w-0 flex-1 overflow-x-auto rounded-md bg-zinc-100 px-3 py-2 font-mono text-sm whitespace-nowrap select-all dark:bg-zinc-800">
              {created.key}
            </code>
            <CopyButton text={created.key} label="Copy key" />
          </div>
          <div>
            <div className="mb-2 flex flex-wrap items-center justify-between gap-2">
              <p className="text-sm font-medium">Use it</p>
              <div role="tablist" className="flex gap-1">
                {list.map((s) => (
                  <button key={s.id} type="button" role="tab" aria-selected={s.id === current?.id} onClick={() => setTab(s.id)}
                    className={s.id === current?.id
                      ? "rounded-md bg-zinc-900 px-2.5 py-1 text-xs font-medium text-white dark:bg-white dark:text-zinc-900"
                      : "rounded-md px-2.5 py-1 text-xs font-medium text-zinc-600 hover:bg-zinc-100 dark:text-zinc-400 dark:hover:bg-zinc-800"}>
                    {s.label}
                  </button>
                ))}
              </div>
            </div>
            {current && (
              <div className="overflow-hidden rounded-lg bg-zinc-950 ring-1 ring-zinc-800">
                <div className="flex items-center justify-between border-b border-zinc-800 px-3 py-1.5">
                  <span className="font-mono text-[11px] text-zinc-400">{current.language}</span>
                  <CopyButton text={current.code} className="h-7" />
                </div>
                <pre data-testid={`snippet-${current.id}`} className="overflow-x-auto p-4 font-mono text-[12.5px] leading-relaxed text-zinc-100">
                  {current.code}
                </pre>
              </div>
            )}
          </div>
        </div>
      )}
    </Modal>
  );
}
