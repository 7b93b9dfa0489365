import type { FastifyInstance } from "fastify";

/**
 * Counts a server's requests until each response has gone (or its client has), so that a stop
 * can wait for them within a grace and then close what is left. Node's closeIdleConnections does
 * not count a connection that opened and never sent a byte as idle, so without this a single such
 * client (a pooled socket, a port scanner) holds `close()` for ever.
 */
export class RequestsInFlight {
  private count = 0;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly app: FastifyInstance) {
    app.addHook("onRequest", async (_request, reply) => {
      this.count++;
      reply.raw.once("close", () => {
        this.count--;
        if (this.count === 0) for (const wake of [...this.waiters]) wake();
      });
    });
  }

  get size(): number {
    return this.count;
  }

  /** Resolves once no request is in flight, or when `signal` aborts first. */
  whenNone(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.count > 0 && !signal?.aborted) return;
        this.waiters.delete(check);
        signal?.removeEventListener("abort", check);
        resolve();
      };
      this.waiters.add(check);
      signal?.addEventListener("abort", check, { once: true });
      check();
    });
  }

  /**
   * Stops the server: new connections are refused at once; once no request is in flight (or
   * `cut` aborts), every connection left is closed, answered or not.
   */
  async close(cut?: AbortSignal): Promise<void> {
    const closed = this.app.close();
    await this.whenNone(cut);
    this.app.server.closeAllConnections();
    await closed;
  }
}
