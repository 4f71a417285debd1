import { useState } from "react";
import { IconKey, IconPlus } from "../components/icons";
import { useNotice } from "../components/Notice";
import { Badge, Button, Card, Confirm, CopyButton, Empty, ErrorBanner, Field, inputClass, Loading, Modal, PageHeader } from "../components/ui";
import { useSession } from "../context";
import { ApiError, describeError, type ApiKey, type CreatedKey } from "../lib/api";
import { formatDateTime, relativeTime } from "../lib/format";
import { useNow, usePoll } from "../lib/hooks";
import { snippets } from "../lib/snippets";

export function Keys() {
  const { client } = useSession();
  const keys = usePoll(() => client.keys(), [client], 5000);
  const now = useNow(5000);
  const [notice, notify] = useNotice();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedKey | null>(null);
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
    : <Badge tone="good" dot>Active</Badge>;

  const rows = [...active, ...revoked];

  return (
    <>
      <PageHeader
        title="Keys"
        description="Client keys for Claude Code, SDKs and tools. Kestrel stores only a hash: a key is shown once, when it is created."
        actions={<Button variant="primary" onClick={() => setCreating(true)}><IconPlus size={16} /> Create key</Button>}
      />
      {keys.error != null && <ErrorBanner className="mb-4" error={`Could not load keys: ${describeError(keys.error)}`} onRetry={keys.refresh} />}

      <Card className="overflow-hidden">
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
                  <th className="px-3 py-2.5 font-medium">Status</th>
                  <th className="px-3 py-2.5 font-medium">Created</th>
                  <th className="px-3 py-2.5 font-medium">Last used</th>
                  <th className="px-4 py-2.5"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                {rows.map((k) => (
                  <tr key={k.id} data-testid={`key-row-${k.name}`} className={k.revoked_at ? "text-zinc-400 dark:text-zinc-500" : ""}>
                    <td className="px-4 py-3 font-medium text-zinc-900 dark:text-white">{k.name}</td>
                    <td className="px-3 py-3 font-mono text-xs">{k.prefix}…</td>
                    <td className="px-3 py-3">{status(k)}</td>
                    <td className="px-3 py-3 text-zinc-600 dark:text-zinc-400" title={formatDateTime(k.created_at)}>{relativeTime(k.created_at, now)}</td>
                    <td className="px-3 py-3 text-zinc-600 dark:text-zinc-400" title={k.last_used_at ? formatDateTime(k.last_used_at) : undefined}>{relativeTime(k.last_used_at, now)}</td>
                    <td className="px-4 py-2 text-right">
                      {!k.revoked_at && (
                        <Button size="sm" variant="ghost" className="text-red-600 hover:text-red-700 dark:text-red-400" onClick={() => { setError(null); setRevoking(k); }} aria-label={`Revoke ${k.name}`}>
                          Revoke
                        </Button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <ul className="divide-y divide-zinc-100 md:hidden dark:divide-zinc-800">
              {rows.map((k) => (
                <li key={k.id} className="flex items-center justify-between gap-3 p-4">
                  <div className="min-w-0">
                    <div className="flex items-center gap-2"><span className="truncate font-medium">{k.name}</span>{status(k)}</div>
                    <div className="mt-0.5 text-xs text-zinc-500 dark:text-zinc-400"><span className="font-mono">{k.prefix}…</span> · used {relativeTime(k.last_used_at, now)}</div>
                  </div>
                  {!k.revoked_at && (
                    <Button size="sm" variant="ghost" className="text-red-600 dark:text-red-400" onClick={() => { setError(null); setRevoking(k); }}>Revoke</Button>
                  )}
                </li>
              ))}
            </ul>
          </>
        )}
      </Card>

      <CreateKey open={creating} onClose={() => setCreating(false)}
        onCreated={async (k) => { setCreating(false); setCreated(k); await keys.refresh(); }} />
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

function CreateKey({ open, onClose, onCreated }: { open: boolean; onClose: () => void; onCreated: (key: CreatedKey) => void }) {
  const { client } = useSession();
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!name.trim()) {
      setError("Name the key after who or what uses it.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const key = await client.createKey(name.trim());
      setName("");
      onCreated(key);
    } catch (exc) {
      setError(exc instanceof ApiError && exc.field === "name" ? exc.message : describeError(exc));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal open={open} title="Create a client key" onClose={onClose}
      footer={<><Button onClick={onClose}>Cancel</Button><Button type="submit" form="create-key" variant="primary" busy={busy}>Create key</Button></>}>
      <form id="create-key" onSubmit={submit} noValidate>
        <Field label="Name" error={error} hint="Who or what uses it, e.g. laptop or ci.">
          {(id) => <input id={id} className={inputClass} value={name} onChange={(e) => setName(e.target.value)} autoFocus maxLength={100} placeholder="laptop" />}
        </Field>
      </form>
    </Modal>
  );
}

function ShowKey({ created, onClose }: { created: CreatedKey | null; onClose: () => void }) {
  const [tab, setTab] = useState("claude-code");
  const origin = window.location.origin;
  const list = created ? snippets(origin, created.key) : [];
  const current = list.find((s) => s.id === tab) ?? list[0];
  return (
    <Modal open={created !== null} title={`Key “${created?.name ?? ""}” created`} onClose={onClose} wide
      footer={<Button variant="primary" onClick={onClose}>Done</Button>}>
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
