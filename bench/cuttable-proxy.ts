import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on loopback in front of a server (the benchmark's PostgreSQL), so a benchmark can
 * take one client's connection away without touching the server: `cut` drops every connection
 * and refuses new ones, `stall` forwards nothing more and closes nothing (a network gone silent),
 * `restore` lets traffic through again, what a stall held included.
 */
export interface CuttableProxy {
  readonly port: number;
  cut(): void;
  stall(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startCuttableProxy(
  targetPort: number,
  targetHost = "127.0.0.1",
): Promise<CuttableProxy> {
  let refusing = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    stall: () => {
      refusing = true;
      for (const s of sockets) s.pause();
    },
    restore: () => {
      refusing = false;
      for (const s of sockets) s.resume();
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
