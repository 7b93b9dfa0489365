import { createWriteStream, type WriteStream } from "node:fs";
import { Writable } from "node:stream";

/**
 * The bytes that all uploads held in memory may take together: past it, an upload goes to its
 * temp file as any large one does, so memory stays bounded however many clients send at once.
 */
export class HeldBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }

  get held(): number {
    return this.used;
  }
}

/**
 * Where a staged file's bytes go when it may be held (StageOptions.holdUpTo): in memory while
 * they fit within `limit` and the budget, else into the temp file at `path`, from its first byte
 * on. A small upload is then written once its hash is known, and not at all when the store has
 * its content already (a template sent with every task): each file step is a trip through libuv's
 * thread pool, and a 16 kB audio with a reused template took 17 of them (issue 14).
 */
export class HoldingSink extends Writable {
  private parts: Buffer[] = [];
  private bytes = 0;
  private file: WriteStream | undefined;

  constructor(
    private readonly path: string,
    private readonly limit: number,
    private readonly budget: HeldBudget,
  ) {
    super();
  }

  /**
   * The whole content, when it stayed in memory; its bytes stay on the budget until the caller
   * gives them back. Undefined once it went to the file.
   */
  content(): Buffer | undefined {
    if (this.file) return undefined;
    // Copied even when it came as one chunk: a chunk may be a view of a larger socket read, which
    // holding it would keep whole, beyond what the budget counts.
    const whole = Buffer.concat(this.parts, this.bytes);
    this.parts = [whole];
    return whole;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.file && this.bytes + chunk.length <= this.limit && this.budget.take(chunk.length)) {
      this.parts.push(chunk);
      this.bytes += chunk.length;
      callback();
      return;
    }
    const file = this.file ?? this.spill();
    if (file.write(chunk)) callback();
    else file.once("drain", () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    const file = this.file;
    if (!file) {
      callback();
      return;
    }
    file.end();
    file.once("close", () => callback(file.errored));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A finished sink is destroyed too (autoDestroy); what it holds is the caller's from then on.
    if (error || !this.writableFinished) this.release();
    const file = this.file;
    // The file may still be opening: report the end only once its descriptor is closed, so that
    // removing it afterwards cannot race the open that would recreate it.
    if (!file || file.closed) {
      callback(error);
      return;
    }
    file.once("close", () => callback(error));
    file.destroy();
  }

  /** Gives the held bytes back to the budget (a failed stage; the caller's, once it is done). */
  release(): void {
    this.budget.give(this.bytes);
    this.parts = [];
    this.bytes = 0;
  }

  private spill(): WriteStream {
    const file = createWriteStream(this.path);
    file.on("error", (err) => this.destroy(err));
    for (const part of this.parts) file.write(part);
    this.release();
    this.file = file;
    return file;
  }
}
