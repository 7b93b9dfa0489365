import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 that counts the bytes going each way: put between the gateway and a
 * worker, it measures what the gateway really sent (HTTP headers, probes and polls included).
 */
export interface ByteCounter {
  readonly port: number;
  /** Bytes from the client (the gateway) to the upstream (the worker). */
  readonly sent: number;
  /** Bytes from the upstream back to the client. */
  readonly received: number;
  readonly connections: number;
  /** Requests the client sent, by method and first path segment: "POST /v1/blobs" → 3. */
  readonly requests: ReadonlyMap<string, number>;
  /** Requests by method and whole path, query left off: "PUT /v1/blobs/<sha256>" → 1. */
  readonly paths: ReadonlyMap<string, number>;
  close(): Promise<void>;
}

/** A request line; the " HTTP/1.1" tail keeps bytes of a video from passing for one. */
const REQUEST_LINE = /(GET|HEAD|PUT|POST|DELETE|PATCH) (\/[^/ ?]*\/[^/ ?]*)([^ ?]*)[^ ]* HTTP\/1\.[01]\r\n/g;
const LONGEST_LINE = 400;

/**
 * Counts request lines in one connection's client → server bytes. A line may straddle two
 * chunks, so each scan starts a little before the new chunk and only counts lines ending in it.
 */
function requestSniffer(into: Map<string, number>, byPath: Map<string, number>) {
  let carry = "";
  return (chunk: Buffer) => {
    const text = carry + chunk.toString("latin1");
    for (const m of text.matchAll(REQUEST_LINE)) {
      if (m.index + m[0].length <= carry.length) continue;
      const key = `${m[1]} ${m[2]}`;
      into.set(key, (into.get(key) ?? 0) + 1);
      const path = `${key}${m[3]}`;
      byPath.set(path, (byPath.get(path) ?? 0) + 1);
    }
    carry = text.slice(-LONGEST_LINE);
  };
}

export async function startByteCounter(upstreamPort: number): Promise<ByteCounter> {
  let sent = 0;
  let received = 0;
  let connections = 0;
  const requests = new Map<string, number>();
  const paths = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    connections++;
    const upstream = connect(upstreamPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      // Either side failing ends both; the gateway sees a dropped connection, as on a real network.
      s.once("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const sniff = requestSniffer(requests, paths);
    client.on("data", (chunk: Buffer) => {
      sent += chunk.length;
      sniff(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("byte counter: no port");
  return {
    port: address.port,
    get sent() {
      return sent;
    },
    get received() {
      return received;
    },
    get connections() {
      return connections;
    },
    requests,
    paths,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
