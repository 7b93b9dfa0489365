import { EventEmitter } from "node:events";
import { type FileHandle, open } from "node:fs/promises";
import { Readable } from "node:stream";

/** The most one read of an arriving result takes. */
const READ_BYTES = 64 * 1024;

/**
 * A task's result while it comes home from its machine, for the POST /tasks/sync that waits on the
 * task: the client reads it as it arrives instead of after it has all arrived, so a big MP4 crosses
 * the two links (machine → gateway → client) at once, not one after the other.
 *
 * What the client gets is never more than what will be kept: it reads the file the gateway stores
 * the result to, and the last byte is held back until the task is completed with that very file
 * (its hash checked, stored, the completion committed). Should any of that fail, the client's
 * connection is cut before the answer's last chunk: its HTTP library reports a body cut short, and
 * the task, which goes on (another attempt), is fetched by the X-Task-Id it was given.
 */
export class ArrivingResult {
  private state: "arriving" | "completed" | "failed" = "arriving";
  private failure: Error | undefined;
  private tempPath: string | undefined;
  /** Bumped on every change, so a reader can tell it missed one while it was reading. */
  private version = 0;
  private readonly changes = new EventEmitter();

  constructor(
    /** As the machine announced it: the reader sends no more, and no less once completed. */
    readonly bytes: number,
    /** Where the result is kept once stored: read from there if the temp file is gone already. */
    private readonly storedPath: string,
    /** Told once, when it is completed or failed. */
    private readonly onSettled: () => void,
  ) {
    this.changes.setMaxListeners(0);
  }

  /** The dispatcher: more of the result may be in `path`, the file it is being stored to. */
  arrived(path: string): void {
    this.tempPath = path;
    this.changed();
  }

  /** The dispatcher: all of it arrived, `bytes` in all; a length other than announced fails it. */
  staged(bytes: number): void {
    if (bytes !== this.bytes)
      this.failed(new Error(`the result has ${bytes} bytes where the machine announced ${this.bytes}`));
    else this.changed();
  }

  /** The dispatcher: the task is completed with this result: the last byte may go. */
  completed(): void {
    if (this.state !== "arriving") return;
    this.state = "completed";
    this.changed();
    this.onSettled();
  }

  /** The dispatcher: it will not complete the task with this result. Nothing after this changes. */
  failed(err: Error): void {
    if (this.state !== "arriving") return;
    this.state = "failed";
    this.failure = err;
    this.changed();
    this.onSettled();
  }

  /**
   * The result's bytes as they arrive, once the first of them were read: undefined when it failed
   * before that. The stream ends once the task is completed, and errors otherwise. Whoever sends
   * it has bytes to send before anything can fail, so an answer that fails is always one cut
   * short, never an error before its first byte under the video's headers.
   */
  async opened(): Promise<Readable | undefined> {
    const reader = new FollowingReader(this);
    return (await reader.readFirst()) ? reader : undefined;
  }

  /** @internal the reader's view */
  get now() {
    return {
      state: this.state,
      failure: this.failure,
      tempPath: this.tempPath,
      storedPath: this.storedPath,
      version: this.version,
    };
  }

  /** @internal resolves at the next change after `version` (at once if there was one). */
  async next(version: number): Promise<void> {
    if (this.version !== version) return;
    await new Promise<void>((resolve) => this.changes.once("change", resolve));
  }

  private changed(): void {
    this.version++;
    this.changes.emit("change");
  }
}

/**
 * Reads the file a result is being written to, up to what is on disk, and waits for more. Through
 * one descriptor opened once: the temp file is unlinked once the result is stored, and the open
 * descriptor goes on reading it.
 */
class FollowingReader extends Readable {
  private file: FileHandle | undefined;
  private position = 0;
  private reading = false;

  constructor(private readonly result: ArrivingResult) {
    super({ highWaterMark: READ_BYTES });
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.pump().then(
      () => {
        this.reading = false;
      },
      (err: unknown) => {
        this.reading = false;
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  /** Reads ahead the first chunk (or the end) before anyone asks: false when the result failed first. */
  async readFirst(): Promise<boolean> {
    this.reading = true;
    try {
      await this.pump();
      return !this.destroyed;
    } catch {
      this.destroy();
      return false;
    } finally {
      // Before the stream's own read-ahead (next tick), which would otherwise find a read going on.
      this.reading = false;
    }
  }

  /** Pushes one chunk, or the end, waiting for the result to move when nothing can be read yet. */
  private async pump(): Promise<void> {
    const total = this.result.bytes;
    for (;;) {
      if (this.destroyed) return;
      const now = this.result.now;
      if (now.state === "failed") throw now.failure ?? new Error("the result was not kept");
      // The last byte waits for the completion.
      const limit = now.state === "completed" ? total : Math.max(0, total - 1);
      if (this.position >= total && now.state === "completed") {
        this.push(null);
        return;
      }
      const file = this.position < limit ? await this.openFile(now) : undefined;
      if (file) {
        const want = Math.min(READ_BYTES, limit - this.position);
        const { bytesRead, buffer } = await file.read(Buffer.allocUnsafe(want), 0, want, this.position);
        if (this.destroyed) return;
        if (bytesRead > 0) {
          // Only the bytes read go out: the rest of the unzeroed buffer is never seen.
          this.position += bytesRead;
          this.push(buffer.subarray(0, bytesRead));
          return;
        }
        // A completed result is all on disk: a file shorter than announced is not the result.
        if (now.state === "completed") throw new Error("the stored result is shorter than announced");
      }
      await this.result.next(now.version);
    }
  }

  private async openFile(now: ArrivingResult["now"]): Promise<FileHandle | undefined> {
    if (this.file) return this.file;
    // Before the first byte was written the temp file may not exist yet; once the result is
    // stored it may not exist any more, and the stored copy is the same bytes.
    for (const path of [now.tempPath, now.state === "completed" ? now.storedPath : undefined]) {
      if (path === undefined) continue;
      try {
        this.file = await open(path, "r");
        return this.file;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    return undefined;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.file;
    this.file = undefined;
    if (!file) {
      callback(err);
      return;
    }
    file.close().then(
      () => callback(err),
      () => callback(err),
    );
  }
}

/**
 * Hands a task's arriving result from the dispatcher to the POST /tasks/sync of the same gateway
 * that waits on that task. A sync request served by another gateway (PostgreSQL, issue 13) is
 * not here: it sends the stored result once the task is completed, as before.
 */
export class ResultRelay {
  private readonly waiting = new Map<string, (result: ArrivingResult) => void>();
  private readonly live = new Set<ArrivingResult>();
  private closed = false;

  /** A sync request waits on `taskId`: `take` gets its result when it starts coming home. */
  expect(taskId: string, take: (result: ArrivingResult) => void): () => void {
    this.waiting.set(taskId, take);
    return () => {
      if (this.waiting.get(taskId) === take) this.waiting.delete(taskId);
    };
  }

  /**
   * The dispatcher starts bringing a result home: the arriving result to keep up to date when a
   * sync request waits for it, else undefined.
   */
  arriving(taskId: string, bytes: number, storedPath: string): ArrivingResult | undefined {
    const take = this.waiting.get(taskId);
    if (!take || this.closed) return undefined;
    this.waiting.delete(taskId);
    const result = new ArrivingResult(bytes, storedPath, () => this.live.delete(result));
    this.live.add(result);
    take(result);
    return result;
  }

  /**
   * The gateway closes: the answers still following a result are cut. Their results come home
   * only once the next term re-attaches to the attempts, and a close that waited for those
   * answers would wait for the dispatcher it closes next.
   */
  close(): void {
    this.closed = true;
    for (const result of [...this.live]) result.failed(new Error("the gateway is stopping"));
  }
}
