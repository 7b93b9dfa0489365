import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { StreamMessage } from "../../src/client/index.js";
import type { Connection } from "./connection.js";

export const ConnectionContext = createContext<Connection | undefined>(undefined);

export function useConnection(): Connection {
  const connection = useContext(ConnectionContext);
  if (!connection) throw new Error("no connection");
  return connection;
}

/** Calls `listener` with every message of the shared stream while the view is shown. */
export function useStream(listener: (message: StreamMessage) => void): void {
  const connection = useConnection();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => connection.subscribe((m) => latest.current(m)), [connection]);
}

/** Re-renders every second while `active`, for the clocks of waiting and running tasks. */
export function useTick(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}
