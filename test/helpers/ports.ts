import { once } from "node:events";
import { createServer, type Server } from "node:net";

/**
 * `n` different loopback ports that were free a moment ago, for processes that must come back at
 * the same address after a restart (a machine in machines.json, a gateway behind a balancer).
 * All are held open until all are chosen, so no two answers are the same port.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = createServer();
      servers.push(server);
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
    }
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === "string") throw new Error("no port");
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
