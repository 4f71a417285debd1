// The admin key lives in sessionStorage: gone when the tab closes, never in a cookie.

const KEY = "kestrel.adminKey";
const THEME = "kestrel.theme";

export function loadKey(): string | null {
  try {
    return window.sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function saveKey(key: string | null): void {
  try {
    if (key) window.sessionStorage.setItem(KEY, key);
    else window.sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: the key lives only as long as the page
  }
}

export type Theme = "light" | "dark";

export function initialTheme(): Theme {
  try {
    const stored = window.localStorage.getItem(THEME);
    if (stored === "light" || stored === "dark") return stored;
  } catch {
    // ignore
  }
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function applyTheme(theme: Theme, remember = true): void {
  document.documentElement.classList.toggle("dark", theme === "dark");
  document.documentElement.style.colorScheme = theme;
  if (remember) {
    try {
      window.localStorage.setItem(THEME, theme);
    } catch {
      // ignore
    }
  }
}
