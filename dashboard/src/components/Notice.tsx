import { useEffect, useState } from "react";
import { IconCheck } from "./icons";

/** A short-lived confirmation ("Account reset"), announced to screen readers. */
export function useNotice(): [React.ReactNode, (message: string) => void] {
  const [message, setMessage] = useState<{ text: string; n: number } | null>(null);
  useEffect(() => {
    if (!message) return;
    const timer = window.setTimeout(() => setMessage(null), 4000);
    return () => window.clearTimeout(timer);
  }, [message]);
  const node = (
    <div aria-live="polite" className="pointer-events-none fixed inset-x-0 bottom-4 z-50 flex justify-center px-4">
      {message && (
        <div key={message.n} className="pointer-events-auto flex items-center gap-2 rounded-lg bg-zinc-900 px-4 py-2.5 text-sm text-white shadow-lg dark:bg-white dark:text-zinc-900">
          <IconCheck size={16} className="text-emerald-400 dark:text-emerald-600" /> {message.text}
        </div>
      )}
    </div>
  );
  return [node, (text: string) => setMessage((m) => ({ text, n: (m?.n ?? 0) + 1 }))];
}
