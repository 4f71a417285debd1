import { useState } from "react";
import { Logo } from "../components/icons";
import { Button, ErrorBanner, Field, inputClass } from "../components/ui";
import { ApiError, describeError, verifyAdminKey } from "../lib/api";

export function SignIn({ notice, onSignedIn }: { notice: string | null; onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    const value = key.trim();
    if (!value) {
      setError("Enter the admin key.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await verifyAdminKey(value);
      onSignedIn(value);
    } catch (exc) {
      setError(exc instanceof ApiError && exc.status === 401
        ? "That admin key is not right. Check for a typo, or use the key printed when Kestrel first started."
        : describeError(exc));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="flex min-h-screen items-center justify-center px-4 py-12">
      <div className="w-full max-w-sm">
        <div className="mb-8 flex flex-col items-center gap-3 text-center">
          <Logo size={44} />
          <div>
            <h1 className="text-xl font-semibold tracking-tight">Sign in to Kestrel</h1>
            <p className="mt-1 text-sm text-zinc-500 dark:text-zinc-400">One endpoint, a pool of Anthropic accounts.</p>
          </div>
        </div>
        <form onSubmit={submit} className="space-y-4 rounded-xl bg-white p-6 shadow-sm ring-1 ring-zinc-200 dark:bg-zinc-900 dark:ring-zinc-800">
          {notice && !error && <ErrorBanner error={notice} />}
          <Field label="Admin key" hint={<>Printed at first start, or the <code className="font-mono">ADMIN_KEY</code> setting. Kept in this tab only.</>}>
            {(id) => (
              <input
                id={id}
                type="password"
                autoComplete="current-password"
                autoFocus
                spellCheck={false}
                value={key}
                onChange={(e) => setKey(e.target.value)}
                placeholder="kadm_…"
                className={inputClass + " font-mono"}
              />
            )}
          </Field>
          {error && <ErrorBanner error={error} />}
          <Button type="submit" variant="primary" busy={busy} className="w-full">Sign in</Button>
        </form>
      </div>
    </div>
  );
}
