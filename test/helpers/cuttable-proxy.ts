import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

export interface CuttableProxy {
  port: number;
  /** Bytes sent through it towards the server so far. */
  readonly bytesIn: number;
  /** Drops every connection and refuses new ones: the machine behind it looks dead. */
  cut(): void;
  /**
   * Forwards nothing more but closes nothing: the network went silent (a pulled cable), which
   * neither end can tell from a slow peer until a deadline or keepalive says so.
   */
  stall(): void;
  /**
   * Lets traffic through again: the machine "comes back". Connections a stall froze go on with
   * what waited, as TCP's retransmissions deliver it once a network heals.
   */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy on loopback in front of a server, so a test can make a machine unreachable without
 * stopping it (a network partition): a worker keeps its jobs, as a real machine would. The chaos
 * benchmark puts one in front of PostgreSQL, to take one gateway's database connection away.
 */
export async function startCuttableProxy(
  targetPort: number,
  targetHost = "127.0.0.1",
): Promise<CuttableProxy> {
  let cut = false;
  let bytesIn = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (cut) {
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
    client.on("data", (chunk: Buffer) => {
      bytesIn += chunk.length;
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get bytesIn() {
      return bytesIn;
    },
    cut: () => {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    stall: () => {
      cut = true;
      for (const s of sockets) s.pause();
    },
    restore: () => {
      cut = false;
      for (const s of sockets) s.resume();
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
