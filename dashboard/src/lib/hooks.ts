import { useCallback, useEffect, useRef, useState } from "react";

/** The current time, ticking every `interval` ms (one timer per component that asks). */
export function useNow(interval = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), interval);
    return () => window.clearInterval(timer);
  }, [interval]);
  return now;
}

export interface Poll<T> {
  data: T | undefined;
  error: unknown;
  /** True only until the first answer: later refreshes keep showing the data they replace. */
  loading: boolean;
  refresh: () => Promise<void>;
  /** Change the data on screen now (an answer that carries the new state), until the next load. */
  update: (change: (data: T | undefined) => T | undefined) => void;
}

/**
 * Fetch now and every `interval` ms while the tab is visible. The previous data stays on
 * screen while a refresh is in flight and when one fails, so nothing flickers; an answer to a
 * superseded request (the deps changed meanwhile) is dropped. A null `load`: nothing to fetch
 * yet (it waits on something else); the poll stays loading.
 */
export function usePoll<T>(load: (() => Promise<T>) | null, deps: unknown[], interval = 5000): Poll<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(async (gen: number) => {
    const loader = loadRef.current;
    if (!loader) return;
    try {
      const value = await loader();
      if (gen !== generation.current) return;
      setData(value);
      setError(null);
    } catch (exc) {
      if (gen !== generation.current) return;
      setError(exc);
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  }, []);

  const idle = load === null;
  useEffect(() => {
    const gen = ++generation.current;
    setLoading(true);
    if (idle) return;
    void run(gen);
    if (!interval) return;
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void run(gen);
    }, interval);
    return () => window.clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, interval, idle]);

  const refresh = useCallback(() => run(generation.current), [run]);
  return { data, error, loading: loading && data === undefined, refresh, update: setData };
}

/** Width of an element, kept up to date (charts draw in real pixels, text stays crisp). */
export function useWidth<T extends HTMLElement>(): [React.RefObject<T | null>, number] {
  const ref = useRef<T | null>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    const observer = new ResizeObserver(([entry]) => setWidth(Math.floor(entry.contentRect.width)));
    observer.observe(element);
    setWidth(Math.floor(element.getBoundingClientRect().width));
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

/** `value`, once it stopped changing for `delay` ms (typing in a filter box). */
export function useDebounced<T>(value: T, delay = 300): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), delay);
    return () => window.clearTimeout(timer);
  }, [value, delay]);
  return settled;
}
