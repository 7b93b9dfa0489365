import type { IncomingMessage } from "node:http";
import { InputError, UploadTimeoutError } from "../../errors.js";
import { unlessAborted } from "../../unless-aborted.js";
import type { Clock, Timer } from "../clock.js";

export interface UploadDeadlineOptions {
  clock: Clock;
  /** No byte of the body for this long cuts the upload. */
  idleMs: number;
  /** The whole body must have arrived within this long of the request's start. */
  totalMs: number;
}

/**
 * Bounds one upload in time: a client that stops sending (idle) or sends too slowly (total) is
 * cut, and so is one that hangs up. `signal` aborts with the reason; everything reading the body
 * takes it, so no pipeline can wait on a dead client and hold a temp file open (issue 9: "an idle
 * partial upload is held forever"). A socket timeout cannot do this job: it would also cut the
 * long, silent wait of POST /tasks/sync once the upload is in.
 */
export class UploadDeadline {
  private readonly controller = new AbortController();
  private idle: Timer | undefined;
  private readonly total: Timer;
  private readonly onData = () => this.armIdle();
  private readonly onClose = () => {
    if (!this.request.complete) this.abort(new UploadCutError());
  };

  constructor(
    private readonly request: IncomingMessage,
    private readonly options: UploadDeadlineOptions,
  ) {
    this.total = options.clock.setTimeout(
      () =>
        this.abort(
          new UploadTimeoutError(
            `the upload took longer than ${seconds(options.totalMs)}; send it faster or raise --upload-timeout`,
          ),
        ),
      options.totalMs,
    );
    request.on("data", this.onData);
    request.once("close", this.onClose);
    this.armIdle();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The body is in (or the upload failed): stop watching. */
  done(): void {
    this.total.cancel();
    this.cancelIdle();
    this.request.off("data", this.onData);
    this.request.off("close", this.onClose);
  }

  private armIdle(): void {
    this.cancelIdle();
    this.idle = this.options.clock.setTimeout(() => {
      // Every byte is in, yet the form never ended: @fastify/busboy can stall on a part without a
      // Content-Disposition followed by a field (found by test/security/fuzz.test.ts).
      if (this.request.complete) {
        return this.abort(
          new InputError("MALFORMED_MULTIPART", "the multipart body could not be read to its end"),
        );
      }
      // Paused means we hold the client back (disk or a machine slower than the client): not idle.
      if (this.request.readableFlowing === false) return this.armIdle();
      this.abort(
        new UploadTimeoutError(`no data arrived for ${seconds(this.options.idleMs)}; the upload was cut off`),
      );
    }, this.options.idleMs);
  }

  private cancelIdle(): void {
    this.idle?.cancel();
    this.idle = undefined;
  }

  private abort(reason: Error): void {
    if (this.controller.signal.aborted) return;
    this.done();
    this.controller.abort(reason);
  }
}

/** The client hung up mid-upload; there is nobody to answer, the error only ends the request's work. */
export class UploadCutError extends UploadTimeoutError {
  constructor() {
    super("the client closed the connection before the upload was complete");
  }
}

/**
 * Reads and drops the rest of a body that was refused before it was read (429, 507), under the
 * same watch as an upload, so that the client, still sending, gets to read the answer and the
 * connection does not linger half-read; a client that stalls is disconnected instead.
 */
export async function discardBody(request: IncomingMessage, options: UploadDeadlineOptions): Promise<void> {
  if (request.complete || request.destroyed) return;
  const deadline = new UploadDeadline(request, options);
  try {
    const ended = new Promise<void>((resolve, reject) => {
      request.once("end", resolve).once("error", reject);
    });
    request.resume();
    await unlessAborted(ended, deadline.signal);
  } catch {
    request.socket?.destroy();
  } finally {
    deadline.done();
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
