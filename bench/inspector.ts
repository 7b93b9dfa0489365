import { once } from "node:events";
import { WebSocket } from "undici";
import { getJson } from "./http.js";

/**
 * A child process's V8 inspector (started with `--inspect=127.0.0.1:PORT` in NODE_OPTIONS),
 * spoken to over the Chrome DevTools Protocol: what the soak needs to measure memory after a full
 * garbage collection rather than wherever V8's own schedule left it.
 */
export class Inspector {
  private next = 1;
  private readonly waiting = new Map<number, (reply: { error?: { message: string } }) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.addEventListener("message", (event) => {
      const reply = JSON.parse(String(event.data)) as { id?: number; error?: { message: string } };
      if (reply.id === undefined) return;
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
  }

  static async connect(port: number): Promise<Inspector> {
    const [target] = await getJson<Array<{ webSocketDebuggerUrl: string }>>(
      `http://127.0.0.1:${port}/json/list`,
    );
    if (!target) throw new Error(`no inspector target on port ${port}`);
    const socket = new WebSocket(target.webSocketDebuggerUrl);
    await once(socket, "open");
    return new Inspector(socket);
  }

  /** A full, memory-reducing collection (what DevTools' "collect garbage" button does). */
  async collectGarbage(): Promise<void> {
    await this.call("HeapProfiler.collectGarbage");
  }

  close(): void {
    this.socket.close();
  }

  private call(method: string, params: Record<string, unknown> = {}): Promise<void> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (reply) =>
        reply.error ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(),
      );
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }
}
