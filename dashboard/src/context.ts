import { createContext, useContext } from "react";
import type { Client, Features } from "./lib/api";

export interface Session {
  client: Client;
  signOut: (notice?: string) => void;
  features: Features;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside a signed-in page");
  return session;
}
