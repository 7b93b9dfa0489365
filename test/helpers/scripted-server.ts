import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Health } from "../../src/protocol/schemas.js";

export interface ScriptedAnswer {
  readonly status?: number;
  /** An object is sent as JSON; a string as it is (an HTML page, half a JSON document…). */
  readonly body?: unknown;
  readonly contentType?: string;
  /** Send the head and the first half of the body, then cut the connection. */
  readonly cutMidBody?: boolean;
}

export interface ScriptedServer {
  readonly url: string;
  /** `METHOD /path` of every request, in arrival order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * A real HTTP server on loopback that answers whatever `script` says for each request: a stand-in
 * for a worker agent (or anything found at its address) that breaks the protocol on purpose.
 * Request bodies are read to their end first, so uploads do not stall.
 */
export async function startScriptedServer(
  script: (method: string, path: string) => ScriptedAnswer,
): Promise<ScriptedServer> {
  const requests: string[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on("end", () => {
      const method = req.method ?? "GET";
      const path = req.url ?? "/";
      requests.push(`${method} ${path}`);
      const answer = script(method, path);
      const text =
        answer.body === undefined
          ? ""
          : typeof answer.body === "string"
            ? answer.body
            : JSON.stringify(answer.body);
      const type = answer.contentType ?? (typeof answer.body === "string" ? "text/html" : "application/json");
      res.writeHead(answer.status ?? 200, {
        "content-type": type,
        "content-length": Buffer.byteLength(text),
      });
      if (answer.cutMidBody) {
        res.write(text.slice(0, Math.floor(text.length / 2)));
        res.socket?.destroy();
        return;
      }
      res.end(method === "HEAD" ? undefined : text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A health answer that keeps the protocol, for scripts that break something else. */
export function healthyWorker(overrides: Partial<Health> = {}): Health {
  return {
    protocol: 1,
    engine: "scripted",
    version: "test",
    max_concurrent: 1,
    running: [],
    queued: [],
    free_disk_bytes: 1_000_000_000,
    ...overrides,
  };
}
