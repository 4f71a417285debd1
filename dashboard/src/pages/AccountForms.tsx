import { useEffect, useState } from "react";
import { IconExternal } from "../components/icons";
import { Button, CopyButton, ErrorBanner, Field, FormModal, inputClass, Modal, Segmented, Toggle } from "../components/ui";
import { useSession } from "../context";
import { ApiError, describeError, type Account, type AccountInput } from "../lib/api";
import { proxyChange, proxyUrlProblem } from "../lib/proxy";

interface Errors {
  form?: string;
  name?: string;
  api_key?: string;
  base_url?: string;
  priority?: string;
  proxy_url?: string;
}

function fieldErrors(exc: unknown): Errors {
  if (exc instanceof ApiError && exc.field && ["name", "api_key", "base_url", "priority", "proxy_url"].includes(exc.field)) {
    return { [exc.field]: exc.message };
  }
  return { form: describeError(exc) };
}

/** Add an API-key account, or edit one. The credential is write-only: never shown, only replaced. */
export function AccountForm({ open, account, onClose, onSaved }: {
  open: boolean; account?: Account; onClose: () => void; onSaved: (account: Account) => void;
}) {
  const { client } = useSession();
  const editing = account !== undefined;
  const [name, setName] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [baseUrl, setBaseUrl] = useState("");
  const [priority, setPriority] = useState("0");
  const [enabled, setEnabled] = useState(true);
  // Write-only, like the key: empty keeps the stored proxy, shown masked in the hint.
  const [proxyUrl, setProxyUrl] = useState("");
  const [removeProxy, setRemoveProxy] = useState(false);
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!open) return;
    setName(account?.name ?? "");
    setApiKey("");
    setBaseUrl(account?.base_url ?? "");
    setPriority(String(account?.priority ?? 0));
    setEnabled(account?.enabled ?? true);
    setProxyUrl("");
    setRemoveProxy(false);
    setErrors({});
  }, [open, account]);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    const next: Errors = {};
    if (!name.trim()) next.name = "Give the account a name.";
    if (!editing && apiKey.trim().length < 8) next.api_key = "Paste the Anthropic API key (sk-ant-…).";
    const prio = Number(priority);
    if (!/^-?\d+$/.test(priority.trim()) || prio < -1000 || prio > 1000) next.priority = "A whole number from -1000 to 1000.";
    if (baseUrl.trim() && !/^https?:\/\/\S+$/.test(baseUrl.trim())) next.base_url = "A URL starting with http:// or https://.";
    const proxyProblem = removeProxy ? null : proxyUrlProblem(proxyUrl);
    if (proxyProblem) next.proxy_url = proxyProblem;
    setErrors(next);
    if (Object.keys(next).length) return;

    const input: AccountInput = {
      name: name.trim(), priority: prio, enabled, base_url: baseUrl.trim() || null, ...proxyChange(proxyUrl, removeProxy),
    };
    if (apiKey.trim()) input.api_key = apiKey.trim();
    setBusy(true);
    try {
      const saved = editing ? await client.updateAccount(account.id, input) : await client.createAccount(input);
      onSaved(saved);
    } catch (exc) {
      setErrors(fieldErrors(exc));
    } finally {
      setBusy(false);
    }
  };

  const formId = editing ? "edit-account" : "add-account";
  const stored = account?.proxy_url ?? null;
  return (
    <FormModal open={open} title={editing ? `Edit ${account.name}` : "Add an API-key account"} onClose={onClose} formId={formId}
      submitLabel={editing ? "Save changes" : "Add account"} busy={busy} onSubmit={submit} error={errors.form}>
      <Field label="Name" error={errors.name}>
        {(id) => <input id={id} className={inputClass} value={name} onChange={(e) => setName(e.target.value)} placeholder="work" autoFocus maxLength={100} />}
      </Field>
      {account?.type === "oauth" ? (
        <p className="rounded-md bg-zinc-50 px-3 py-2 text-xs text-zinc-600 ring-1 ring-zinc-200 dark:bg-zinc-800/50 dark:text-zinc-400 dark:ring-zinc-700">
          Signed in as {account.email ?? "a Claude account"}. Its tokens are kept fresh by Kestrel; to sign in again, connect it again under the same name.
        </p>
      ) : (
      <Field
        label={editing ? "New API key" : "API key"}
        error={errors.api_key}
        hint={editing
          ? <>Leave empty to keep the stored key (<span className="font-mono">{account.credential_hint}</span>). A new key clears the failure state.</>
          : "Stored encrypted; it is never shown again."}
      >
        {(id) => (
          <input id={id} type="password" autoComplete="off" spellCheck={false} className={inputClass + " font-mono"}
            value={apiKey} onChange={(e) => setApiKey(e.target.value)} placeholder={editing ? "unchanged" : "sk-ant-api03-…"} />
        )}
      </Field>
      )}
      <div className="grid gap-4 sm:grid-cols-[8rem_1fr]">
        <Field label="Priority" error={errors.priority} hint="Higher first.">
          {(id) => <input id={id} inputMode="numeric" className={inputClass + " tabular"} value={priority} onChange={(e) => setPriority(e.target.value)} />}
        </Field>
        <Field label="Base URL" error={errors.base_url} hint="Empty: the server's CLAUDE_BASE_URL.">
          {(id) => <input id={id} type="url" className={inputClass + " font-mono"} value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} placeholder="https://api.anthropic.com" />}
        </Field>
      </div>
      <Field
        label="Proxy"
        error={errors.proxy_url}
        hint={<>
          {stored
            ? <>Leave empty to keep <span className="font-mono break-all">{stored}</span>; a new proxy clears the failure state.</>
            : <>Empty: the server's environment proxy (HTTPS_PROXY…), if any.</>}
          {" "}The password is stored sealed and never shown again.
        </>}
      >
        {(id) => (
          <input id={id} type="text" autoComplete="off" spellCheck={false} className={inputClass + " font-mono"}
            value={proxyUrl} disabled={removeProxy} onChange={(e) => setProxyUrl(e.target.value)}
            placeholder={stored ? "unchanged" : "socks5h://user:password@host:1080"} />
        )}
      </Field>
      {stored && (
        <label className="-mt-2 flex items-center gap-2 text-sm">
          <input type="checkbox" className="size-4 accent-teal-600" checked={removeProxy}
            onChange={(e) => { setRemoveProxy(e.target.checked); if (e.target.checked) setProxyUrl(""); }} />
          <span>Remove proxy <span className="text-zinc-500 dark:text-zinc-400">(the environment's applies, if any)</span></span>
        </label>
      )}
      <label className="flex items-center gap-3 text-sm">
        <Toggle label="Enabled" checked={enabled} onChange={setEnabled} />
        <span>Enabled — serves requests</span>
      </label>
    </FormModal>
  );
}

type Flow = "redirect" | "paste";

/** Connect a Claude subscription with OAuth: through this browser, or by pasting the code. */
export function OAuthConnect({ open, onClose, onConnected }: {
  open: boolean; onClose: () => void; onConnected: (account: Account) => void;
}) {
  const { client, features } = useSession();
  const [flow, setFlow] = useState<Flow>("redirect");
  const [name, setName] = useState("");
  const [started, setStarted] = useState<{ authorize_url: string; state: string } | null>(null);
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!open) return;
    setName("");
    setStarted(null);
    setCode("");
    setError(null);
  }, [open]);

  const explain = (exc: unknown) =>
    exc instanceof ApiError && exc.status === 404 && /no route/i.test(exc.message)
      ? "This Kestrel does not support OAuth accounts."
      : describeError(exc);

  const needName = () => {
    if (name.trim()) return true;
    setError("Give the account a name first.");
    return false;
  };

  const redirect = async () => {
    if (!needName()) return;
    setBusy(true);
    setError(null);
    try {
      const { url } = await client.oauthLink(name.trim());
      window.location.assign(url);
    } catch (exc) {
      setError(explain(exc));
      setBusy(false);
    }
  };

  const start = async () => {
    if (!needName()) return;
    setBusy(true);
    setError(null);
    try {
      setStarted(await client.oauthStart(name.trim()));
    } catch (exc) {
      setError(explain(exc));
    } finally {
      setBusy(false);
    }
  };

  const exchange = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!started) return;
    if (!code.trim()) {
      setError("Paste the code the Anthropic page showed.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onConnected(await client.oauthExchange(started.state, code.trim()));
    } catch (exc) {
      setError(explain(exc));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal open={open} title="Connect a Claude account" onClose={onClose} wide>
      {features.oauth === "off" ? (
        <div className="space-y-3 text-sm text-zinc-600 dark:text-zinc-300">
          <p>This Kestrel does not connect Claude subscription accounts yet.</p>
          <ErrorBanner error={features.message ?? "OAuth accounts are off on this server."} />
          <p>Restart Kestrel with <code className="font-mono">OAUTH_CLIENT_ID</code> set, then come back here.</p>
        </div>
      ) : (
      <div className="space-y-4">
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          Sign in with the Claude subscription to pool. Kestrel stores its tokens encrypted and keeps them fresh.
        </p>
        <Segmented label="How to connect" value={flow} onChange={(f) => { setFlow(f); setError(null); }}
          options={[{ value: "redirect", label: "In this browser" }, { value: "paste", label: "Paste a code" }]} />
        <Field label="Account name" hint="How the account is listed here.">
          {(id) => <input id={id} className={inputClass} value={name} disabled={started !== null} onChange={(e) => setName(e.target.value)} placeholder="team-max" />}
        </Field>

        {flow === "redirect" ? (
          <div className="space-y-3">
            <p className="text-sm text-zinc-600 dark:text-zinc-400">
              You are sent to Anthropic to approve, then back to Kestrel. Use this when this browser can reach Kestrel at its redirect address.
            </p>
            <Button variant="primary" busy={busy} onClick={redirect}><IconExternal size={16} /> Continue to Anthropic</Button>
          </div>
        ) : !started ? (
          <div className="space-y-3">
            <p className="text-sm text-zinc-600 dark:text-zinc-400">
              For a headless server: open the sign-in link anywhere, approve, and paste the code the page shows.
            </p>
            <Button variant="primary" busy={busy} onClick={start}>Get sign-in link</Button>
          </div>
        ) : (
          <form onSubmit={exchange} className="space-y-3">
            <div>
              <p className="mb-1.5 text-sm font-medium">1. Open this link and approve</p>
              <div className="flex items-center gap-2">
                <a href={started.authorize_url} target="_blank" rel="noreferrer noopener"
                  className="min-w-0 flex-1 truncate rounded-md bg-zinc-100 px-3 py-2 font-mono text-xs text-teal-700 hover:underline dark:bg-zinc-800 dark:text-teal-300">
                  {started.authorize_url}
                </a>
                <CopyButton text={started.authorize_url} />
              </div>
            </div>
            <Field label="2. Paste the code" hint="It may look like code#state; paste it whole.">
              {(id) => <input id={id} className={inputClass + " font-mono"} value={code} onChange={(e) => setCode(e.target.value)} autoComplete="off" spellCheck={false} />}
            </Field>
            <Button type="submit" variant="primary" busy={busy}>Connect account</Button>
          </form>
        )}
        {error && <ErrorBanner error={error} />}
      </div>
      )}
    </Modal>
  );
}
