import { useEffect, useId, useRef, useState, type ButtonHTMLAttributes, type ReactNode } from "react";
import type { Tone } from "../lib/format";
import { IconAlert, IconCheck, IconCopy, IconX } from "./icons";

export function cx(...names: (string | false | null | undefined)[]): string {
  return names.filter(Boolean).join(" ");
}

type Variant = "primary" | "secondary" | "danger" | "ghost";

const VARIANTS: Record<Variant, string> = {
  primary:
    "bg-teal-600 text-white shadow-sm hover:bg-teal-700 disabled:bg-teal-600/50 dark:bg-teal-500 dark:text-zinc-950 dark:hover:bg-teal-400",
  secondary:
    "bg-white text-zinc-800 ring-1 ring-inset ring-zinc-300 shadow-sm hover:bg-zinc-50 dark:bg-zinc-800 dark:text-zinc-100 dark:ring-zinc-700 dark:hover:bg-zinc-700",
  danger:
    "bg-red-600 text-white shadow-sm hover:bg-red-700 disabled:bg-red-600/50 dark:bg-red-500 dark:hover:bg-red-400",
  ghost:
    "text-zinc-600 hover:bg-zinc-200/70 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100",
};

export function Button({
  variant = "secondary",
  size = "md",
  busy = false,
  className,
  children,
  disabled,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; size?: "sm" | "md"; busy?: boolean }) {
  return (
    <button
      type="button"
      disabled={disabled || busy}
      className={cx(
        "inline-flex items-center justify-center gap-1.5 rounded-md font-medium whitespace-nowrap transition-colors disabled:cursor-not-allowed disabled:opacity-60",
        size === "sm" ? "h-8 px-2.5 text-[13px]" : "h-9 px-3.5 text-sm",
        VARIANTS[variant],
        className,
      )}
      {...rest}
    >
      {busy && <Spinner size={14} />}
      {children}
    </button>
  );
}

const TONES: Record<Tone, string> = {
  good: "bg-emerald-50 text-emerald-700 ring-emerald-600/20 dark:bg-emerald-500/10 dark:text-emerald-300 dark:ring-emerald-400/25",
  warn: "bg-amber-50 text-amber-800 ring-amber-600/25 dark:bg-amber-400/10 dark:text-amber-300 dark:ring-amber-400/25",
  bad: "bg-red-50 text-red-700 ring-red-600/20 dark:bg-red-500/10 dark:text-red-300 dark:ring-red-400/25",
  muted: "bg-zinc-100 text-zinc-600 ring-zinc-500/20 dark:bg-zinc-800 dark:text-zinc-400 dark:ring-zinc-600/40",
  info: "bg-sky-50 text-sky-700 ring-sky-600/20 dark:bg-sky-400/10 dark:text-sky-300 dark:ring-sky-400/25",
};

export const DOT: Record<Tone, string> = {
  good: "bg-emerald-500",
  warn: "bg-amber-500",
  bad: "bg-red-500",
  muted: "bg-zinc-400 dark:bg-zinc-500",
  info: "bg-sky-500",
};

/** A figure's colour by tone: red when bad, amber as a warning, else `fallback`. */
export function toneText(tone: Tone | undefined, fallback = "text-zinc-900 dark:text-white"): string {
  if (tone === "bad") return "text-red-600 dark:text-red-400";
  if (tone === "warn") return "text-amber-600 dark:text-amber-400";
  return fallback;
}

/** A thin bar filled to `fraction` (over 1 stays full), coloured by tone. */
export function Meter({ fraction, tone, label, className }: { fraction: number; tone: Tone; label: string; className?: string }) {
  const filled = Math.min(1, Math.max(0, fraction));
  return (
    <div
      className={cx("h-1.5 overflow-hidden rounded-full bg-zinc-200 dark:bg-zinc-800", className)}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(filled * 100)}
      aria-valuetext={fraction > 1 ? `${Math.round(fraction * 100)}%` : undefined}
    >
      <div className={cx("h-full rounded-full transition-[width] duration-500", DOT[tone])} style={{ width: `${Math.max(filled * 100, filled > 0 ? 2 : 0)}%` }} />
    </div>
  );
}

export function Badge({ tone = "muted", dot = false, children, className }: {
  tone?: Tone; dot?: boolean; children: ReactNode; className?: string;
}) {
  return (
    <span className={cx("inline-flex items-center gap-1.5 rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset whitespace-nowrap", TONES[tone], className)}>
      {dot && <span className={cx("size-1.5 rounded-full", DOT[tone])} />}
      {children}
    </span>
  );
}

export function Card({ children, className, testId }: { children: ReactNode; className?: string; testId?: string }) {
  return (
    <div data-testid={testId} className={cx("rounded-xl bg-white shadow-sm ring-1 ring-zinc-200 dark:bg-zinc-900 dark:ring-zinc-800", className)}>
      {children}
    </div>
  );
}

export function Spinner({ size = 18, className }: { size?: number; className?: string }) {
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" className={cx("animate-spin", className)} aria-hidden="true">
      <circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" strokeOpacity="0.25" strokeWidth="3" />
      <path d="M21 12a9 9 0 0 0-9-9" fill="none" stroke="currentColor" strokeWidth="3" strokeLinecap="round" />
    </svg>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div role="status" className="flex items-center justify-center gap-2 py-16 text-sm text-zinc-500 dark:text-zinc-400">
      <Spinner /> {label}
    </div>
  );
}

export function Empty({ title, children, action }: { title: string; children?: ReactNode; action?: ReactNode }) {
  return (
    <div className="flex flex-col items-center justify-center gap-2 px-6 py-14 text-center">
      <p className="text-sm font-semibold text-zinc-800 dark:text-zinc-200">{title}</p>
      {children && <p className="max-w-md text-sm text-zinc-500 dark:text-zinc-400">{children}</p>}
      {action && <div className="mt-2">{action}</div>}
    </div>
  );
}

export function ErrorBanner({ error, onRetry, className }: { error: ReactNode; onRetry?: () => void; className?: string }) {
  return (
    <div role="alert" className={cx("flex items-start gap-2.5 rounded-lg bg-red-50 px-3.5 py-2.5 text-sm text-red-800 ring-1 ring-inset ring-red-600/20 dark:bg-red-500/10 dark:text-red-200 dark:ring-red-400/25", className)}>
      <IconAlert className="mt-0.5 shrink-0" size={16} />
      <div className="min-w-0 flex-1 break-words">{error}</div>
      {onRetry && (
        <button type="button" onClick={onRetry} className="shrink-0 font-medium underline underline-offset-2 hover:no-underline">
          Retry
        </button>
      )}
    </div>
  );
}

export function PageHeader({ title, description, actions }: { title: string; description?: ReactNode; actions?: ReactNode }) {
  return (
    <div className="mb-6 flex flex-col gap-3 md:flex-row md:items-end md:justify-between md:gap-8">
      <div className="min-w-0">
        <h1 className="text-xl font-semibold tracking-tight text-zinc-900 dark:text-white">{title}</h1>
        {description && <p className="mt-1 max-w-2xl text-sm text-zinc-500 dark:text-zinc-400">{description}</p>}
      </div>
      {actions && <div className="flex shrink-0 flex-wrap items-center gap-2">{actions}</div>}
    </div>
  );
}

/** The field a dialog opens on: the first enabled input, select or textarea (not a checkbox). */
const FIRST_FIELD = ["input:not([type=hidden]):not([type=checkbox]):not([type=radio])", "select", "textarea"]
  .map((s) => `${s}:not([disabled])`).join(", ");

/**
 * A modal dialog on the native <dialog>: focus trap, Escape and the top layer for free. It opens
 * on its first field, if it has one (else the browser's choice). `dismissible={false}`: only its
 * own buttons close it, not Escape, a click beside it or a × (a key shown once).
 */
export function Modal({ open, title, onClose, children, footer, wide = false, dismissible = true }: {
  open: boolean; title: string; onClose: () => void; children: ReactNode; footer?: ReactNode; wide?: boolean;
  dismissible?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) {
      dialog.showModal();
      // React's autoFocus ran while the dialog was still closed, so showModal() chose the
      // first focusable element: the × in the header.
      dialog.querySelector<HTMLElement>(FIRST_FIELD)?.focus();
    }
    if (!open && dialog.open) dialog.close();
  }, [open]);
  // Closed by the browser, not by `open` (Chromium closes on a second Escape without asking):
  // tell the owner, or open again when only the owner may close it.
  const onNativeClose = () => {
    const dialog = ref.current;
    if (!open || !dialog || dialog.open) return;
    if (dismissible) onClose();
    else dialog.showModal();
  };
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(e) => { e.preventDefault(); if (dismissible) onClose(); }}
      onKeyDown={(e) => { if (e.key === "Escape" && !dismissible) e.preventDefault(); }}
      onClose={onNativeClose}
      onClick={(e) => { if (e.target === ref.current && dismissible) onClose(); }}
      className={cx(
        "m-auto w-[calc(100%-1.5rem)] rounded-xl bg-white p-0 text-zinc-900 shadow-2xl ring-1 ring-zinc-200 backdrop:bg-zinc-950/50 backdrop:backdrop-blur-[2px] dark:bg-zinc-900 dark:text-zinc-100 dark:ring-zinc-700",
        wide ? "max-w-2xl" : "max-w-md",
      )}
    >
      {open && (
        <div className="flex max-h-[85vh] flex-col">
          <div className="flex items-center justify-between border-b border-zinc-200 px-5 py-3.5 dark:border-zinc-800">
            <h2 id={titleId} className="text-base font-semibold">{title}</h2>
            {dismissible && (
              <button type="button" onClick={onClose} aria-label="Close" className="rounded-md p-1 text-zinc-500 hover:bg-zinc-100 hover:text-zinc-800 dark:hover:bg-zinc-800 dark:hover:text-zinc-200">
                <IconX size={18} />
              </button>
            )}
          </div>
          <div className="overflow-y-auto px-5 py-4">{children}</div>
          {footer && (
            <div className="flex flex-wrap justify-end gap-2 border-t border-zinc-200 bg-zinc-50 px-5 py-3 dark:border-zinc-800 dark:bg-zinc-900/60 rounded-b-xl">
              {footer}
            </div>
          )}
        </div>
      )}
    </dialog>
  );
}


/** A dialog holding one form: Cancel, and a primary button that submits it; the form's own error
 * (one no field owns) under its fields. */
export function FormModal({ open, title, onClose, formId, submitLabel, busy, onSubmit, error, children }: {
  open: boolean; title: string; onClose: () => void; formId: string; submitLabel: string; busy: boolean;
  onSubmit: (e: React.FormEvent) => void; error?: string; children: ReactNode;
}) {
  return (
    <Modal
      open={open}
      title={title}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button type="submit" form={formId} variant="primary" busy={busy}>{submitLabel}</Button>
        </>
      }
    >
      <form id={formId} onSubmit={onSubmit} className="space-y-4" noValidate>
        {children}
        {error && <ErrorBanner error={error} />}
      </form>
    </Modal>
  );
}

export function Confirm({ open, title, children, confirmLabel, onConfirm, onClose, busy, error }: {
  open: boolean; title: string; children: ReactNode; confirmLabel: string;
  onConfirm: () => void; onClose: () => void; busy?: boolean; error?: string | null;
}) {
  return (
    <Modal
      open={open}
      title={title}
      onClose={onClose}
      footer={
        <>
          <Button onClick={onClose}>Cancel</Button>
          <Button variant="danger" busy={busy} onClick={onConfirm}>{confirmLabel}</Button>
        </>
      }
    >
      <div className="text-sm text-zinc-600 dark:text-zinc-300">{children}</div>
      {error && <ErrorBanner className="mt-3" error={error} />}
    </Modal>
  );
}

const INPUT =
  "block w-full rounded-md border-0 bg-white px-3 py-2 text-sm text-zinc-900 shadow-sm ring-1 ring-inset ring-zinc-300 placeholder:text-zinc-400 focus:ring-2 focus:ring-inset focus:ring-teal-600 focus:outline-none dark:bg-zinc-950 dark:text-zinc-100 dark:ring-zinc-700 dark:placeholder:text-zinc-600 dark:focus:ring-teal-500";

export const inputClass = INPUT;

export function Field({ label, hint, error, children }: { label: string; hint?: ReactNode; error?: string | null; children: (id: string) => ReactNode }) {
  const id = useId();
  return (
    <div className="space-y-1.5">
      <label htmlFor={id} className="block text-sm font-medium text-zinc-800 dark:text-zinc-200">{label}</label>
      {children(id)}
      {error ? (
        <p className="text-xs text-red-600 dark:text-red-400">{error}</p>
      ) : hint ? (
        <p className="text-xs text-zinc-500 dark:text-zinc-400">{hint}</p>
      ) : null}
    </div>
  );
}

export function Toggle({ checked, onChange, label, disabled }: { checked: boolean; onChange: (value: boolean) => void; label: string; disabled?: boolean }) {
  return (
    <button
      type="button"
      role="switch"
      aria-checked={checked}
      aria-label={label}
      disabled={disabled}
      onClick={() => onChange(!checked)}
      className={cx(
        "relative inline-flex h-5 w-9 shrink-0 items-center rounded-full transition-colors disabled:opacity-50",
        checked ? "bg-teal-600 dark:bg-teal-500" : "bg-zinc-300 dark:bg-zinc-700",
      )}
    >
      <span className={cx("inline-block size-4 rounded-full bg-white shadow transition-transform", checked ? "translate-x-4.5" : "translate-x-0.5")} />
    </button>
  );
}

/** Copy to the clipboard; falls back to a hidden textarea where the Clipboard API is refused
 * (it needs a secure context, and Kestrel is often reached over plain HTTP on a LAN). */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "fixed -left-[9999px] top-0 opacity-0";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

export function CopyButton({ text, label = "Copy", className }: { text: string; label?: string; className?: string }) {
  const [state, setState] = useState<"idle" | "done" | "failed">("idle");
  useEffect(() => {
    if (state === "idle") return;
    const timer = window.setTimeout(() => setState("idle"), 1800);
    return () => window.clearTimeout(timer);
  }, [state]);
  return (
    <Button
      size="sm"
      className={className}
      onClick={async () => setState((await copyText(text)) ? "done" : "failed")}
      aria-live="polite"
    >
      {state === "done" ? <IconCheck size={15} className="text-emerald-600 dark:text-emerald-400" /> : <IconCopy size={15} />}
      {state === "done" ? "Copied" : state === "failed" ? "Select and copy" : label}
    </Button>
  );
}

export function Stat({ label, value, sub, tone, className, testId }: {
  label: string; value: ReactNode; sub?: ReactNode; tone?: Tone; className?: string; testId?: string;
}) {
  return (
    <Card className={cx("px-4 py-3.5", className)} testId={testId}>
      <p className="text-xs font-medium tracking-wide text-zinc-500 uppercase dark:text-zinc-400">{label}</p>
      <p data-tone={tone ?? "neutral"} className={cx("mt-1 text-2xl font-semibold tabular tracking-tight", toneText(tone))}>
        {value}
      </p>
      {sub && <p className="mt-0.5 truncate text-xs text-zinc-500 dark:text-zinc-400">{sub}</p>}
    </Card>
  );
}

/** Radio buttons in a row; a null `value`: none chosen yet. */
export function Segmented<T extends string>({ value, options, onChange, label }: {
  value: T | null; options: { value: T; label: string }[]; onChange: (value: T) => void; label: string;
}) {
  return (
    <div role="radiogroup" aria-label={label} className="inline-flex rounded-lg bg-zinc-200/70 p-0.5 dark:bg-zinc-800">
      {options.map((o) => (
        <button
          key={o.value}
          type="button"
          role="radio"
          aria-checked={o.value === value}
          onClick={() => onChange(o.value)}
          className={cx(
            "rounded-md px-3 py-1 text-sm font-medium transition-colors",
            o.value === value
              ? "bg-white text-zinc-900 shadow-sm dark:bg-zinc-950 dark:text-white"
              : "text-zinc-600 hover:text-zinc-900 dark:text-zinc-400 dark:hover:text-zinc-100",
          )}
        >
          {o.label}
        </button>
      ))}
    </div>
  );
}
