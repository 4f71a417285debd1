import { useCallback, useEffect, useMemo, useState } from "react";
import { Layout } from "./components/Layout";
import { SessionContext } from "./context";
import { Client, type Features } from "./lib/api";
import { pageOf, PAGES, useLocation } from "./lib/router";
import { loadKey, saveKey } from "./lib/session";
import { Accounts } from "./pages/Accounts";
import { Keys } from "./pages/Keys";
import { Logs } from "./pages/Logs";
import { Overview } from "./pages/Overview";
import { Usage } from "./pages/Usage";
import { SignIn } from "./pages/SignIn";

export function App() {
  const [key, setKey] = useState<string | null>(loadKey);
  const [notice, setNotice] = useState<string | null>(null);
  const [features, setFeatures] = useState<Features>({ oauth: "absent" });
  const location = useLocation();

  const signOut = useCallback((message?: string) => {
    saveKey(null);
    setKey(null);
    setNotice(message ?? null);
  }, []);

  const client = useMemo(
    () => key ? new Client(key, undefined, () => signOut("The admin key was refused. Sign in again.")) : null,
    [key, signOut],
  );

  useEffect(() => {
    if (!client) return;
    let live = true;
    void client.features().then((f) => live && setFeatures(f));
    return () => { live = false; };
  }, [client]);

  const page = pageOf(location.pathname);
  useEffect(() => {
    const label = PAGES.find((p) => p.page === page)?.label;
    document.title = client ? `${label} · Kestrel` : "Sign in · Kestrel";
  }, [page, client]);

  if (!client) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(k) => {
          saveKey(k);
          setNotice(null);
          setKey(k);
        }}
      />
    );
  }

  return (
    <SessionContext.Provider value={{ client, signOut, features }}>
      <Layout page={page}>
        {page === "overview" && <Overview />}
        {page === "accounts" && <Accounts />}
        {page === "keys" && <Keys />}
        {page === "logs" && <Logs />}
        {page === "usage" && <Usage />}
      </Layout>
    </SessionContext.Provider>
  );
}
