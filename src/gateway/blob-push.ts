import type { BlobInfo, BlobStore } from "../blobs/blob-store.js";
import type { Clock } from "./clock.js";
import type { Machine } from "./fleet.js";

export interface BlobPushOptions {
  readonly clock: Clock;
  readonly blobs: BlobStore;
  /** How long a machine may take to say whether it holds a blob (HEAD /v1/blobs). */
  readonly askTimeoutMs: number;
  /** The gateway's link has no big send left on it: a big send ahead may start (input-prefetch.ts). */
  readonly onIdle?: () => void;
}

/** A send is given this long plus a minute per 60 MB: a template over a slow LAN, not a stall. */
const MIN_BYTES_PER_MS = 1000;

/** Smaller sends are a few round trips, not a share of the link worth waiting for. */
const BIG_SEND_BYTES = 1_000_000;

/** Whether a send of `bytes` takes a share of the gateway's link that others should wait for. */
export function isBigSend(bytes: number): boolean {
  return bytes >= BIG_SEND_BYTES;
}

/**
 * The gateway's sends of blobs to machines. Sends ahead of the tasks that will need them (an
 * avatar's warm, avatar-warmer.ts; a queued task's inputs, input-prefetch.ts) go through
 * `push`, in the background; a starting task's own uploads are counted through `forTask`. A push
 * goes through the same `Machine.uploadOnce` as the dispatcher's uploads, so one blob never
 * crosses to one machine twice at once, and the dispatcher waits for a push under way rather than
 * start its own. A push that fails costs nothing but the bytes: the dispatcher sends what a task
 * needs when the task starts.
 *
 * All of them leave through the gateway's one link, and sends that share a link all end as late
 * as the last: a send ahead must not slow a task that waits in its slot for its inputs. `idle`
 * says when no big send is under way, and `onIdle` when that becomes so.
 */
export class BlobPush {
  /** Pushes under way. */
  private readonly pushes = new Set<Promise<void>>();
  /** Big sends under way, pushes and task uploads alike. */
  private big = 0;
  private readonly stop = new AbortController();

  constructor(private readonly o: BlobPushOptions) {}

  /** No big send (push or task upload) is under way. */
  get idle(): boolean {
    return this.big === 0;
  }

  /** Whether the machine says it holds the blob (so the gateway knows it from now on). */
  async holds(machine: Machine, sha256: string): Promise<boolean> {
    const held = await machine.client.hasBlob(sha256, this.signal(this.o.askTimeoutMs));
    if (held) machine.knowBlob(sha256);
    return held;
  }

  /**
   * Sends `blob` to `machine` unless it already holds it (asked first, unless `ask` is false: a
   * task's upload may have brought it since the gateway last knew). Resolves once it is there;
   * rejects when the send failed, or the gateway closes.
   */
  push(machine: Machine, blob: BlobInfo, ask = true): Promise<void> {
    const signal = this.signal(this.o.askTimeoutMs + blob.bytes / MIN_BYTES_PER_MS);
    const send = this.counted(blob.bytes, () =>
      machine.uploadOnce(blob.sha256, async () => {
        if (ask && (await machine.client.hasBlob(blob.sha256, signal))) return;
        await machine.client.putBlob(blob.sha256, this.o.blobs.path(blob.sha256), blob.bytes, signal);
      }),
    );
    const settled = send.then(
      () => undefined,
      () => undefined,
    );
    this.pushes.add(settled);
    void settled.then(() => this.pushes.delete(settled));
    return send;
  }

  /** A starting task's upload of `bytes`, counted as a use of the link while it runs. */
  forTask<T>(bytes: number, send: () => Promise<T>): Promise<T> {
    return this.counted(bytes, send);
  }

  /** Stops the pushes under way and waits for them to end. */
  async close(): Promise<void> {
    this.stop.abort(new Error("the gateway is closing"));
    await Promise.all([...this.pushes]);
  }

  private async counted<T>(bytes: number, send: () => Promise<T>): Promise<T> {
    if (!isBigSend(bytes)) return send();
    this.big++;
    try {
      return await send();
    } finally {
      this.big--;
      if (this.big === 0 && !this.stop.signal.aborted) this.o.onIdle?.();
    }
  }

  private signal(ms: number): AbortSignal {
    return AbortSignal.any([this.stop.signal, this.o.clock.timeoutSignal(Math.ceil(ms))]);
  }
}
