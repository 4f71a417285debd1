import { useEffect, useState } from "react";
import { Field, FormModal, inputClass } from "../components/ui";
import { useSession } from "../context";
import { ApiError, describeError, type ApiKey, type CreatedKey } from "../lib/api";
import { createBody, formErrors, formField, formValues, keyChanges, LIMITS, type KeyField, type KeyFormValues, type LimitField } from "../lib/keys";

type Errors = Partial<Record<KeyField | "form", string>>;

const LIMIT_LABELS: Record<LimitField, string> = {
  rpm: "Requests per minute",
  tpm: "Tokens per minute",
  maxConcurrency: "Concurrent requests",
  dailyTokens: "Tokens per day",
  dailyBudget: "Daily budget ($)",
  monthlyBudget: "Monthly budget ($)",
};

function fieldErrors(exc: unknown): Errors {
  const field = exc instanceof ApiError ? formField(exc.field) : null;
  return field ? { [field]: describeError(exc) } : { form: describeError(exc) };
}

/**
 * Create a client key, or edit one: its name, owner and note, and the limits it is used
 * within. Every limit is optional; editing sends only what changed, a cleared input as null.
 */
export function KeyForm({ open, apiKey, onClose, onCreated, onSaved }: {
  open: boolean;
  apiKey?: ApiKey | null;
  onClose: () => void;
  onCreated?: (key: CreatedKey) => void;
  onSaved?: (key: ApiKey) => void;
}) {
  const { client } = useSession();
  const editing = apiKey != null;
  const [initial, setInitial] = useState<KeyFormValues>(() => formValues(apiKey));
  const [values, setValues] = useState<KeyFormValues>(initial);
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!open) return;
    const start = formValues(apiKey);
    setInitial(start);
    setValues(start);
    setErrors({});
  }, [open, apiKey]);

  const set = (field: KeyField) => (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    setValues((v) => ({ ...v, [field]: e.target.value }));

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    const next: Errors = formErrors(values);
    setErrors(next);
    if (Object.keys(next).length) return;

    setBusy(true);
    try {
      if (apiKey) {
        const changes = keyChanges(initial, values);
        if (Object.keys(changes).length === 0) onClose();
        else onSaved?.(await client.updateKey(apiKey.id, changes));
      } else {
        const { name, controls } = createBody(values);
        onCreated?.(await client.createKey(name, controls));
      }
    } catch (exc) {
      setErrors(fieldErrors(exc));
    } finally {
      setBusy(false);
    }
  };

  const formId = editing ? "edit-key" : "create-key";
  return (
    <FormModal open={open} title={editing ? `Edit ${apiKey.name}` : "Create a client key"} onClose={onClose} formId={formId}
      submitLabel={editing ? "Save changes" : "Create key"} busy={busy} onSubmit={submit} error={errors.form}>
      <Field label="Name" error={errors.name} hint="Who or what uses it, e.g. laptop or ci.">
        {(id) => <input id={id} className={inputClass} value={values.name} onChange={set("name")} autoFocus maxLength={100} placeholder="laptop" />}
      </Field>
      <Field label="Owner" error={errors.owner} hint="Optional: who holds it.">
        {(id) => <input id={id} className={inputClass} value={values.owner} onChange={set("owner")} maxLength={200} placeholder="ana@example.com" />}
      </Field>

      <div className="border-t border-zinc-200 pt-3 dark:border-zinc-800">
        <p className="text-sm font-medium text-zinc-800 dark:text-zinc-200">Limits</p>
        <p className="text-xs text-zinc-500 dark:text-zinc-400">Optional; a request outside them is refused (429 for the rates and budgets below, 403 for the rest). Empty: no limit.</p>
      </div>
      <div className="grid grid-cols-2 items-start gap-x-3 gap-y-4">
        {LIMITS.map(({ field, usd }) => (
          <Field key={field} label={LIMIT_LABELS[field]} error={errors[field]}>
            {(id) => (
              <input id={id} className={inputClass + " tabular"} value={values[field]} onChange={set(field)}
                inputMode={usd ? "decimal" : "numeric"} autoComplete="off" placeholder="no limit" />
            )}
          </Field>
        ))}
      </div>
      <p className="-mt-2 text-xs text-zinc-500 dark:text-zinc-400">
        Tokens count input, cache writes and output. Days and months are the server&apos;s (its TIME_ZONE); dollars at its price table&apos;s rates.
      </p>
      <Field label="Allowed models" error={errors.models}
        hint={<>Separated by commas or lines; <span className="font-mono">*</span> matches anything, e.g. <span className="font-mono">claude-haiku-*</span>.</>}>
        {(id) => (
          <textarea id={id} rows={2} className={inputClass + " font-mono"} value={values.models} onChange={set("models")}
            spellCheck={false} autoComplete="off" placeholder="any model" />
        )}
      </Field>
      <Field label="Allowed addresses" error={errors.allowedIps} hint="Addresses or networks (CIDR), separated by commas or lines.">
        {(id) => (
          <textarea id={id} rows={2} className={inputClass + " font-mono"} value={values.allowedIps} onChange={set("allowedIps")}
            spellCheck={false} autoComplete="off" placeholder="from anywhere, e.g. 10.0.0.0/8" />
        )}
      </Field>
      <Field label="Expires" error={errors.expires} hint="In this browser's time zone. Empty: never.">
        {(id) => (
          <input id={id} type="datetime-local" className={inputClass + " tabular dark:[color-scheme:dark]"}
            value={values.expires} onChange={set("expires")} />
        )}
      </Field>
      <Field label="Note" error={errors.note}>
        {(id) => <textarea id={id} rows={2} className={inputClass} value={values.note} onChange={set("note")} maxLength={1000} />}
      </Field>
    </FormModal>
  );
}
