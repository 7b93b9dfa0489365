import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Receiver {
  url: string;
  /** Every body received, in arrival order, including those answered with an error. */
  received: Array<{
    status: number;
    body: Record<string, unknown>;
    /** The body as sent, byte for byte: what a signature covers. */
    raw: string;
    headers: IncomingMessage["headers"];
    url: string;
  }>;
  close(): Promise<void>;
}

/**
 * A real HTTP server standing in for a client's webhook endpoint. `answer(n)` decides the status
 * of the n-th request (0-based), so a test can make it fail on purpose.
 */
export async function startReceiver(answer: (n: number) => number = () => 200): Promise<Receiver> {
  const received: Receiver["received"] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    let text = "";
    req.on("data", (d: Buffer) => {
      text += d.toString();
    });
    req.on("end", () => {
      const status = answer(received.length);
      received.push({
        status,
        body: JSON.parse(text) as Record<string, unknown>,
        raw: text,
        headers: req.headers,
        url: req.url ?? "",
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
