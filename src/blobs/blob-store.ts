import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, link, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";

export interface BlobInfo {
  readonly sha256: string;
  readonly bytes: number;
}

/** A file that has been fully written and hashed but is not yet part of the store. */
export interface StagedBlob extends BlobInfo {
  readonly path: string;
  /** Moves the file into the store under its hash (a no-op when the store already holds it). */
  commit(): Promise<string>;
  /** Deletes the staged file; safe to call twice or after commit. */
  discard(): Promise<void>;
}

export interface StageOptions {
  /** Stop and fail with `onTooLarge()` once more than this many bytes arrive. */
  maxBytes?: number;
  onTooLarge?: () => Error;
  /** Fail unless the content hashes to this. */
  expectedSha256?: string;
  onMismatch?: (actual: string) => Error;
  signal?: AbortSignal;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Content-addressed files under `<root>/<aa>/<sha256>`. Everything is written to `<root>/.tmp`
 * first and renamed into place once complete, so a reader never sees half a file and a crash
 * leaves only temp files, which `init()` sweeps.
 */
export class BlobStore {
  readonly root: string;
  private readonly tmpDir: string;

  constructor(root: string) {
    this.root = root;
    this.tmpDir = join(root, ".tmp");
  }

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    // Anything here belongs to a write that never finished (crash, kill -9).
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
  }

  path(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return join(this.root, sha256.slice(0, 2), sha256);
  }

  async has(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const s = await stat(this.path(sha256));
      return { sha256, bytes: s.size };
    } catch {
      return undefined;
    }
  }

  /** Streams `source` to a temp file while hashing it; memory stays flat whatever the size. */
  async stage(source: Readable, options: StageOptions = {}): Promise<StagedBlob> {
    const tmp = join(this.tmpDir, randomUUID());
    const hash = createHash("sha256");
    let bytes = 0;
    const max = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done: TransformCallback) {
        bytes += chunk.length;
        if (bytes > max) {
          done(options.onTooLarge?.() ?? new Error(`more than ${max} bytes`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    const out = createWriteStream(tmp);
    try {
      // A stream destroyed before it is read (busboy's part of a form cut short) would leave the
      // pipeline waiting forever, holding the temp file open (issue 9).
      if (source.destroyed) throw prematureClose();
      await pipeline(source, meter, out, options.signal ? { signal: options.signal } : {});
    } catch (err) {
      // The file may still be opening: remove it only once its descriptor is closed, or the open
      // would recreate what rm just removed.
      out.on("error", () => undefined).destroy();
      if (!out.closed) await new Promise<void>((resolve) => out.once("close", () => resolve()));
      await rm(tmp, { force: true });
      throw err;
    }
    const sha256 = hash.digest("hex");
    if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
      await rm(tmp, { force: true });
      throw (
        options.onMismatch?.(sha256) ??
        new Error(`content hashes to ${sha256}, not ${options.expectedSha256}`)
      );
    }
    let settled = false;
    return {
      sha256,
      bytes,
      path: tmp,
      commit: async () => {
        settled = true;
        const dest = this.path(sha256);
        // Same content under the same name: replacing an existing copy is harmless and atomic.
        // The fan-out folder usually exists, so try first and make it only when missing: one
        // syscall per commit on the intake's hot path instead of two.
        try {
          await rename(tmp, dest);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          await mkdir(join(this.root, sha256.slice(0, 2)), { recursive: true });
          await rename(tmp, dest);
        }
        return dest;
      },
      discard: async () => {
        if (!settled) await rm(tmp, { force: true });
        settled = true;
      },
    };
  }

  async put(source: Readable, options: StageOptions = {}): Promise<BlobInfo> {
    const staged = await this.stage(source, options);
    await staged.commit();
    return { sha256: staged.sha256, bytes: staged.bytes };
  }

  /** Places a blob at `dest` without copying when both are on one file system. */
  async linkTo(sha256: string, dest: string): Promise<void> {
    await rm(dest, { force: true });
    try {
      await link(this.path(sha256), dest);
    } catch {
      await copyFile(this.path(sha256), dest);
    }
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.path(sha256), { force: true });
  }
}

function prematureClose(): Error {
  return Object.assign(new Error("the stream ended before it was read"), {
    code: "ERR_STREAM_PREMATURE_CLOSE",
  });
}
