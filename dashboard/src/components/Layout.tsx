import { useState, type ReactNode } from "react";
import { useSession } from "../context";
import { navHref, navigate, PAGES, type Page } from "../lib/router";
import { applyTheme, type Theme } from "../lib/session";
import { IconAccounts, IconKey, IconLogout, IconLogs, IconMoon, IconOverview, IconSun, IconUsage, Logo } from "./icons";
import { cx } from "./ui";

const ICONS: Record<Page, (p: { size?: number }) => React.ReactElement> = {
  overview: IconOverview,
  accounts: IconAccounts,
  keys: IconKey,
  logs: IconLogs,
  usage: IconUsage,
};

export function NavLink({ page, current, compact = false }: { page: Page; current: Page; compact?: boolean }) {
  const href = navHref(page);
  const Icon = ICONS[page];
  const active = page === current;
  return (
    <a
      href={href}
      aria-current={active ? "page" : undefined}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(href);
        window.scrollTo(0, 0);
      }}
      className={cx(
        "flex items-center gap-2.5 rounded-md text-sm font-medium transition-colors",
        compact ? "shrink-0 px-3 py-1.5" : "px-2.5 py-2",
        active
          ? "bg-zinc-900/5 text-zinc-900 dark:bg-white/10 dark:text-white"
          : "text-zinc-600 hover:bg-zinc-900/5 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-white/5 dark:hover:text-zinc-100",
      )}
    >
      <span className={cx(active ? "text-teal-600 dark:text-teal-400" : "text-zinc-400 dark:text-zinc-500", compact && "hidden sm:inline")}><Icon size={18} /></span>
      {PAGES.find((p) => p.page === page)?.label}
    </a>
  );
}

function ThemeButton({ compact = false }: { compact?: boolean }) {
  const [theme, setTheme] = useState<Theme>(() => document.documentElement.classList.contains("dark") ? "dark" : "light");
  const next: Theme = theme === "dark" ? "light" : "dark";
  return (
    <button
      type="button"
      onClick={() => { applyTheme(next); setTheme(next); }}
      aria-label={`Switch to ${next} theme`}
      title={`Switch to ${next} theme`}
      className={cx("flex items-center gap-2.5 rounded-md text-sm text-zinc-600 hover:bg-zinc-900/5 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-white/5 dark:hover:text-zinc-100",
        compact ? "p-2" : "w-full px-2.5 py-2")}
    >
      {theme === "dark" ? <IconSun size={18} /> : <IconMoon size={18} />}
      {!compact && (theme === "dark" ? "Light theme" : "Dark theme")}
    </button>
  );
}

export function Layout({ page, children }: { page: Page; children: ReactNode }) {
  const { signOut, features } = useSession();
  const info = features.info;
  return (
    <div className="min-h-screen lg:flex">
      {/* Sidebar, wide screens */}
      <aside className="hidden w-56 shrink-0 border-r border-zinc-200 bg-white/60 lg:block dark:border-zinc-800 dark:bg-zinc-900/40">
        <div className="sticky top-0 flex h-screen flex-col px-3 py-4">
        <div className="mb-6 flex items-center gap-2.5 px-2">
          <Logo />
          <div>
            <p className="text-sm font-semibold leading-tight">Kestrel</p>
            <p className="text-xs text-zinc-500 dark:text-zinc-400">Account pool</p>
          </div>
        </div>
        <nav aria-label="Main" className="flex flex-col gap-0.5">
          {PAGES.map((p) => <NavLink key={p.page} page={p.page} current={page} />)}
        </nav>
        <div className="mt-auto flex flex-col gap-0.5 border-t border-zinc-200 pt-3 dark:border-zinc-800">
          <ThemeButton />
          <button type="button" onClick={() => signOut()} className="flex w-full items-center gap-2.5 rounded-md px-2.5 py-2 text-sm text-zinc-600 hover:bg-zinc-900/5 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-white/5 dark:hover:text-zinc-100">
            <IconLogout size={18} /> Sign out
          </button>
          {info && (
            <p data-testid="server-info" className="truncate px-2.5 pt-2 text-xs text-zinc-400 dark:text-zinc-500"
              title={`Kestrel ${info.version} on ${info.instance}`}>
              v{info.version} · {info.instance}
            </p>
          )}
        </div>
        </div>
      </aside>

      {/* Top bar, narrow screens */}
      <header className="sticky top-0 z-20 border-b border-zinc-200 bg-white/90 backdrop-blur lg:hidden dark:border-zinc-800 dark:bg-zinc-900/90">
        <div className="flex items-center justify-between px-4 pt-3">
          <div className="flex items-center gap-2"><Logo size={24} /><span className="text-sm font-semibold">Kestrel</span></div>
          <div className="flex items-center gap-1">
            <ThemeButton compact />
            <button type="button" onClick={() => signOut()} aria-label="Sign out" className="rounded-md p-2 text-zinc-600 hover:bg-zinc-900/5 dark:text-zinc-400 dark:hover:bg-white/5">
              <IconLogout size={18} />
            </button>
          </div>
        </div>
        <nav aria-label="Main" className="flex gap-0.5 overflow-x-auto px-2 py-2">
          {PAGES.map((p) => <NavLink key={p.page} page={p.page} current={page} compact />)}
        </nav>
      </header>

      <main className="min-w-0 flex-1 px-4 py-6 sm:px-6 lg:px-8 lg:py-8">
        <div className="mx-auto max-w-7xl">{children}</div>
      </main>
    </div>
  );
}
