import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One callback POST as it arrived: what the benchmark checks of it. */
export interface ReceivedCallback {
  readonly taskId: string;
  readonly status: string;
  readonly eventId: number;
  readonly webhookId: string;
}

export interface CallbackReceiver {
  readonly url: string;
  readonly received: readonly ReceivedCallback[];
  close(): Promise<void>;
}

/** A client's webhook endpoint on loopback: answers 200 to every callback and keeps its gist. */
export async function startCallbackReceiver(): Promise<CallbackReceiver> {
  const received: ReceivedCallback[] = [];
  const server: Server = createServer((req, res) => {
    let text = "";
    req.on("data", (d: Buffer) => {
      text += d.toString();
    });
    req.on("end", () => {
      try {
        const body = JSON.parse(text) as { task_id?: unknown; status?: unknown; event_id?: unknown };
        received.push({
          taskId: String(body.task_id),
          status: String(body.status),
          eventId: Number(body.event_id),
          webhookId: String(req.headers["webhook-id"]),
        });
      } catch {
        // not a callback of ours; answered all the same
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
