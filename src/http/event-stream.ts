import { PassThrough } from "node:stream";

/** One Server-Sent Events message. Without `id` it does not move the client's `Last-Event-ID`. */
export interface StreamMessage {
  id?: number;
  event: string;
  data: unknown;
}

export interface EventStreamOptions {
  /**
   * A client that reads slower than we write is cut off once this much waits for it: it
   * reconnects with `Last-Event-ID` and is replayed what it missed from the store, so memory
   * never grows with a stalled reader.
   */
  maxBufferedBytes: number;
  /** Milliseconds the client waits before reconnecting (the stream's `retry:` field). */
  retryMs: number;
}

/**
 * A text/event-stream response body (the HTML Living Standard's Server-Sent Events): messages,
 * keep-alive comments, and a bounded buffer. Fastify sends `body` like any stream, so hooks
 * (CORS, logs) run as for every other response.
 */
export class EventStream {
  readonly body = new PassThrough();
  private ended = false;
  private readonly closedHandlers: (() => void)[] = [];

  constructor(private readonly options: EventStreamOptions) {
    this.body.on("close", () => this.finish());
    this.write(`retry: ${options.retryMs}\n\n`);
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Runs `fn` once when the stream ends, whoever ends it (client gone, `close()`, overflow). */
  onClose(fn: () => void): void {
    if (this.ended) fn();
    else this.closedHandlers.push(fn);
  }

  send(message: StreamMessage): void {
    const id = message.id === undefined ? "" : `id: ${message.id}\n`;
    // JSON has no raw newlines, so the data is always one `data:` line.
    this.write(`${id}event: ${message.event}\ndata: ${JSON.stringify(message.data)}\n\n`);
  }

  /** A comment line: proxies that close idle connections see traffic; clients ignore it. */
  keepAlive(): void {
    this.write(": keep-alive\n\n");
  }

  close(): void {
    if (this.ended) return;
    this.body.end();
    this.finish();
  }

  private write(text: string): void {
    if (this.ended) return;
    if (this.body.writableLength > this.options.maxBufferedBytes) {
      this.body.destroy();
      this.finish();
      return;
    }
    this.body.write(text);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    for (const fn of this.closedHandlers.splice(0)) fn();
  }
}
