import { once } from "node:events";
import { createServer, request as httpRequest } from "node:http";
import type { Socket } from "node:net";

/**
 * An HTTP proxy on 127.0.0.1 that counts the request bodies a client (the gateway) sends an
 * upstream (a worker), by method and first two path segments ("PUT /v1/blobs"): the payload, without
 * the headers or the health probes that a TCP count (byte-counter.ts) also sees.
 */
export interface BodyCounter {
  readonly port: number;
  /** Request body bytes by "METHOD /a/b". */
  readonly bodies: ReadonlyMap<string, number>;
  /** Requests by "METHOD /a/b". */
  readonly requests: ReadonlyMap<string, number>;
  /** Every request body byte so far. */
  readonly total: number;
  close(): Promise<void>;
}

export async function startBodyCounter(upstreamPort: number): Promise<BodyCounter> {
  const bodies = new Map<string, number>();
  const requests = new Map<string, number>();
  let total = 0;
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const key = `${req.method} ${(req.url ?? "/").split("?")[0]?.split("/").slice(0, 3).join("/")}`;
    requests.set(key, (requests.get(key) ?? 0) + 1);
    req.on("data", (chunk: Buffer) => {
      total += chunk.length;
      bodies.set(key, (bodies.get(key) ?? 0) + chunk.length);
    });
    const upstream = httpRequest(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("body counter: no port");
  return {
    port: address.port,
    bodies,
    requests,
    get total() {
      return total;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, "close").catch(() => undefined);
    },
  };
}
