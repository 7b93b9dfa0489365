import { createHash, randomUUID } from "node:crypto";
import { close, createReadStream, createWriteStream, open, write, writev } from "node:fs";
import { link, readdir, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { linkOrCopy } from "../link-or-copy.js";
import { makeDir } from "../make-dir.js";
import { readChunkFor } from "../read-chunk.js";
import { removeFile } from "../remove-file.js";
import { HeldBudget, HoldingSink } from "./holding-sink.js";

export interface BlobInfo {
  readonly sha256: string;
  readonly bytes: number;
}

/** A file that has been fully written and hashed but is not yet part of the store. */
export interface StagedBlob extends BlobInfo {
  /**
   * The staged file; for content held in memory that the store had already, the store's own file
   * (StageOptions.holdUpTo).
   */
  readonly path: string;
  /** The whole content, when it was held in memory (StageOptions.holdUpTo); gone once discarded. */
  readonly content?: Buffer | undefined;
  /** Moves the file into the store under its hash (a no-op when the store already holds it). */
  commit(): Promise<string>;
  /** Deletes the staged file; safe to call twice or after commit. */
  discard(): Promise<void>;
}

/**
 * A staged blob committed by `commitWhile`, which keeps a copy to put back: its temp file as a
 * second link, or the bytes of an upload held in memory.
 */
interface KeptBlob extends StagedBlob {
  /** Commits and keeps the copy, so the blob can be put back while the caller records it. */
  commitKeeping(): Promise<void>;
  /** Puts the blob in place again from the kept copy when it is not there. */
  restoreIfGone(): Promise<void>;
}

/** One file under the store's fan-out folders, for the orphan sweep. */
export interface StoredBlob extends BlobInfo {
  /** Last modification, ms since the epoch: when its content was committed. */
  readonly mtimeMs: number;
}

export interface StageOptions {
  /** Stop and fail with `onTooLarge()` once more than this many bytes arrive. */
  maxBytes?: number;
  onTooLarge?: () => Error;
  /** Fail unless the content hashes to this. */
  expectedSha256?: string;
  onMismatch?: (actual: string) => Error;
  signal?: AbortSignal;
  /** Told each time more is written to the temp file at `path`: for a reader that follows it. */
  onData?: (path: string) => void;
  /**
   * A file of up to this many bytes is held in memory while it arrives (within a budget shared by
   * all uploads, HELD_BYTES_IN_ALL), written once its hash is known, and not written at all when
   * the store has its content already (holding-sink.ts). Not with `onData`, whose reader follows
   * the file as it is written.
   */
  holdUpTo?: number;
}

/** What all uploads held in memory at once may take (StageOptions.holdUpTo). */
export const HELD_BYTES_IN_ALL = 64 * 1024 * 1024;

const SHA256_HEX = /^[0-9a-f]{64}$/;
const FAN_OUT = /^[0-9a-f]{2}$/;
/** A temp file's owner, the prefix of its name (`<owner>.<uuid>`). */
const OWNER = /^[0-9a-f]{16}$/;
const OWNED_TEMP = /^([0-9a-f]{16})\./;

export interface BlobStoreOptions {
  /**
   * Whose the temp files are, for a folder that several gateways share (`--blobs-dir`, issue 13):
   * 16 hex digits that stay the same across restarts (gateway-id.ts). Its temp files are named
   * `<owner>.…`, and `init()` clears only those: the others are other gateways' writes under way.
   * Without it, every temp file is this process's.
   */
  readonly owner?: string;
  /** What all uploads held in memory at once may take (default HELD_BYTES_IN_ALL). */
  readonly heldBytesInAll?: number;
}

/**
 * Content-addressed files under `<root>/<aa>/<sha256>`. Everything is written to `<root>/.tmp`
 * first and renamed into place once complete, so a reader never sees half a file and a crash
 * leaves only temp files, which `init()` sweeps.
 *
 * One blob serves every task with the same content, so deleting one (retention) races with a new
 * upload of that content. The two sides keep to a protocol that needs no lock shared with the
 * store: a writer commits the file, records the rows that reference it, then puts the file back
 * if it vanished meanwhile (`commitWhile`); a deleter moves the file aside first, then asks the
 * store whether anything references it, and puts it back if so (`removeUnlessNeeded`). Whichever
 * order the steps interleave in, one of the two sees the other (see `removeUnlessNeeded`).
 */
export class BlobStore {
  readonly root: string;
  private readonly tmpDir: string;
  /** Blobs on their way out, as `<sha256>.<uuid>`: put back by `init()` after a crash. */
  private readonly trashDir: string;
  private readonly owner: string | undefined;
  /** Starts the name of every temp file of this process. */
  private readonly tempPrefix: string;
  private readonly heldBudget: HeldBudget;

  constructor(root: string, options: BlobStoreOptions = {}) {
    if (options.owner !== undefined && !OWNER.test(options.owner))
      throw new Error(`a blob store's owner is 16 hex digits, not ${options.owner}`);
    this.root = root;
    this.tmpDir = join(root, ".tmp");
    this.trashDir = join(root, ".trash");
    this.owner = options.owner;
    this.tempPrefix = options.owner === undefined ? "" : `${options.owner}.`;
    this.heldBudget = new HeldBudget(options.heldBytesInAll ?? HELD_BYTES_IN_ALL);
  }

  async init(): Promise<void> {
    await makeDir(this.tmpDir);
    await makeDir(this.trashDir);
    // Ours here belong to a write that never finished (crash, kill -9). Another owner's are a
    // write under way by another gateway on the shared folder (its own start clears its leftovers).
    for (const name of await readdir(this.tmpDir)) {
      const owner = OWNED_TEMP.exec(name)?.[1];
      if (owner === undefined || owner === this.owner) await removeFile(join(this.tmpDir, name));
    }
    // A crash between moving a blob aside and deciding its fate: a task may have come to need it
    // meanwhile, so it goes back; the orphan sweep deletes it later if nothing does. (Another
    // gateway's removal under way loses nothing by it: put back, the blob stays until the sweep.)
    for (const name of await readdir(this.trashDir)) {
      const sha256 = name.split(".")[0] ?? "";
      const trash = join(this.trashDir, name);
      if (SHA256_HEX.test(sha256)) await this.putBack(sha256, trash);
      else await removeFile(trash);
    }
  }

  path(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return join(this.root, sha256.slice(0, 2), sha256);
  }

  /** The bytes of staged uploads held in memory now (StageOptions.holdUpTo). */
  get heldBytes(): number {
    return this.heldBudget.held;
  }

  async has(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const s = await stat(this.path(sha256));
      return { sha256, bytes: s.size };
    } catch {
      return undefined;
    }
  }

  /**
   * Streams `source` to a temp file while hashing it; memory stays flat whatever the size. A small
   * file may be held in memory instead (`holdUpTo`), within the store's budget.
   */
  async stage(source: Readable, options: StageOptions = {}): Promise<StagedBlob> {
    const tmp = this.tempPath();
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
    const onData = options.onData;
    const holdUpTo = onData ? 0 : (options.holdUpTo ?? 0);
    const out =
      holdUpTo > 0
        ? new HoldingSink(tmp, holdUpTo, this.heldBudget)
        : createWriteStream(tmp, onData ? { fs: notifyingWrites(() => onData(tmp)) } : {});
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
      await removeFile(tmp);
      throw err;
    }
    const sha256 = hash.digest("hex");
    const holder = out instanceof HoldingSink ? out : undefined;
    const content = holder?.content();
    if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
      holder?.release();
      await removeFile(tmp);
      throw (
        options.onMismatch?.(sha256) ??
        new Error(`content hashes to ${sha256}, not ${options.expectedSha256}`)
      );
    }
    if (holder && content) return this.heldBlob(sha256, content, tmp, () => holder.release());
    let settled = false;
    let kept = false;
    const staged: KeptBlob = {
      sha256,
      bytes,
      path: tmp,
      commit: async () => {
        settled = true;
        return this.moveInto(tmp, sha256);
      },
      commitKeeping: async () => {
        kept = true;
        await this.linkInto(tmp, sha256);
      },
      restoreIfGone: async () => {
        if (kept && !(await this.has(sha256))) await this.linkInto(tmp, sha256);
      },
      discard: async () => {
        if (!settled || kept) await removeFile(tmp);
        settled = true;
        kept = false;
      },
    };
    return staged;
  }

  /**
   * A staged upload held in memory: its temp file is written only when the store lacks the content,
   * and once committed, the held bytes rather than a second link are what `restoreIfGone` puts
   * back. A template sent again with every task then costs two stats, where writing, linking and
   * removing its copy took six trips through the thread pool.
   */
  private async heldBlob(
    sha256: string,
    content: Buffer,
    tmp: string,
    release: () => void,
  ): Promise<KeptBlob> {
    let held: Buffer | undefined = content;
    let written = false;
    const done = () => {
      if (held) release();
      held = undefined;
    };
    let inPlace: boolean;
    try {
      inPlace = (await this.has(sha256)) !== undefined;
      if (!inPlace) {
        written = true;
        await writeFile(tmp, content);
      }
    } catch (err) {
      done();
      if (written) await removeFile(tmp);
      throw err;
    }
    const placeWritten = async () => {
      await this.moveInto(tmp, sha256);
      written = false;
    };
    const restoreIfGone = async () => {
      if (held && !(await this.has(sha256))) await this.writeInto(held, sha256);
    };
    return {
      sha256,
      bytes: content.length,
      path: inPlace ? this.path(sha256) : tmp,
      get content() {
        return held;
      },
      commit: async () => {
        if (written) await placeWritten();
        else await restoreIfGone();
        done();
        return this.path(sha256);
      },
      // In place already, the file stays as it is; one removed meanwhile is `restoreIfGone`'s.
      commitKeeping: async () => {
        if (written) await placeWritten();
      },
      restoreIfGone,
      discard: async () => {
        if (written) await removeFile(tmp);
        written = false;
        done();
      },
    };
  }

  /** Writes `content` into place under its hash, through a temp file. */
  private async writeInto(content: Buffer, sha256: string): Promise<void> {
    const tmp = this.tempPath();
    try {
      await writeFile(tmp, content);
      await this.moveInto(tmp, sha256);
    } catch (err) {
      await removeFile(tmp);
      throw err;
    }
  }

  private tempPath(suffix = ""): string {
    return join(this.tmpDir, `${this.tempPrefix}${randomUUID()}${suffix}`);
  }

  /**
   * Stages what `produce` writes to the path it is given (a file of the store's temp folder, so a
   * crash leaves nothing that `init()` does not sweep): for content made here, such as a sound
   * track taken from a video. The produced file is gone once this settles, whatever happened.
   */
  async stageFrom(produce: (path: string) => Promise<void>, options: StageOptions = {}): Promise<StagedBlob> {
    const out = this.tempPath(".out");
    try {
      await produce(out);
      const { size } = await stat(out);
      return await this.stage(createReadStream(out, { highWaterMark: readChunkFor(size) }), options);
    } finally {
      await removeFile(out);
    }
  }

  /**
   * Puts a second link of `file` into place under its hash; `file` stays. A blob already there is
   * the same content, and stays as it is: a template sent again with each task costs one syscall,
   * not a link, a rename and an unlink. (A deleter that moves it aside meanwhile is `commitWhile`'s
   * to answer, as for any blob in place.)
   */
  private async linkInto(file: string, sha256: string): Promise<void> {
    await this.intoFanOut(sha256, (dest) =>
      link(file, dest).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }),
    );
  }

  /** Renames a complete file into place under its hash. */
  private async moveInto(file: string, sha256: string): Promise<string> {
    // Same content under the same name: replacing an existing copy is harmless and atomic.
    return this.intoFanOut(sha256, (dest) => rename(file, dest));
  }

  /**
   * Runs `place` with the blob's path. The fan-out folder usually exists, so it is made only when
   * `place` finds it missing (ENOENT), and `place` runs again: one syscall per commit on the
   * intake's hot path instead of two.
   */
  private async intoFanOut(sha256: string, place: (dest: string) => Promise<void>): Promise<string> {
    const dest = this.path(sha256);
    try {
      await place(dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      await makeDir(join(this.root, sha256.slice(0, 2)));
      await place(dest);
    }
    return dest;
  }

  /**
   * Commits `staged` (from this store's `stage`), runs `record`, which writes the rows that
   * reference them, and then makes sure each blob is still in place: a retention sweep that
   * decided to delete the same content before `record` committed may have removed it meanwhile,
   * and the temp file, kept as a second link until now (or the bytes of an upload held in
   * memory), puts it back (see `removeUnlessNeeded`).
   */
  async commitWhile<T>(staged: readonly StagedBlob[], record: () => Promise<T>): Promise<T> {
    const blobs = staged as readonly KeptBlob[];
    try {
      for (const blob of blobs) await blob.commitKeeping();
      const recorded = await record();
      for (const blob of blobs) await blob.restoreIfGone();
      return recorded;
    } finally {
      for (const blob of blobs) await blob.discard();
    }
  }

  /**
   * Deletes a blob unless, once it is out of the way, `stillNeeded` says a row references it;
   * answers the bytes freed (0 when kept or already gone).
   *
   * Why the order closes the race with `commitWhile`: the blob is renamed aside (atomically)
   * before `stillNeeded` reads the store. A writer's rows either committed before that read (it
   * sees them and the file goes back) or after it; then the writer's own check runs after the
   * rename, finds no file, and commits its kept copy again. Either way the rows that reference
   * the content end with the file in place. Replacing a file that a writer put back meanwhile is
   * harmless: it is the same content.
   */
  async removeUnlessNeeded(sha256: string, stillNeeded: () => Promise<boolean>): Promise<number> {
    const trash = join(this.trashDir, `${sha256}.${randomUUID()}`);
    try {
      await rename(this.path(sha256), trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw err;
    }
    let needed: boolean;
    try {
      needed = await stillNeeded();
    } catch (err) {
      await this.putBack(sha256, trash);
      throw err;
    }
    if (needed) {
      await this.putBack(sha256, trash);
      return 0;
    }
    const { size } = await stat(trash);
    await removeFile(trash);
    return size;
  }

  private async putBack(sha256: string, trash: string): Promise<void> {
    try {
      await link(trash, this.path(sha256));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EEXIST: a writer put it back already.
      if (code === "ENOENT") await this.moveInto(trash, sha256);
      else if (code !== "EEXIST") throw err;
    }
    await removeFile(trash);
  }

  /** Every blob in place, folder by folder (memory stays flat with the store's size). */
  async *list(): AsyncGenerator<StoredBlob> {
    const folders = await readdir(this.root).catch(() => [] as string[]);
    for (const folder of folders) {
      if (!FAN_OUT.test(folder)) continue;
      const names = await readdir(join(this.root, folder)).catch(() => [] as string[]);
      for (const name of names) {
        if (!SHA256_HEX.test(name) || !name.startsWith(folder)) continue;
        const s = await stat(join(this.root, folder, name)).catch(() => undefined);
        if (s?.isFile()) yield { sha256: name, bytes: s.size, mtimeMs: s.mtimeMs };
      }
    }
  }

  async put(source: Readable, options: StageOptions = {}): Promise<BlobInfo> {
    const staged = await this.stage(source, options);
    await staged.commit();
    return { sha256: staged.sha256, bytes: staged.bytes };
  }

  /** Places a blob at `dest` without copying when both are on one file system. */
  async linkTo(sha256: string, dest: string): Promise<void> {
    await linkOrCopy(this.path(sha256), dest);
  }

  async remove(sha256: string): Promise<void> {
    await removeFile(this.path(sha256));
  }
}

function prematureClose(): Error {
  return Object.assign(new Error("the stream ended before it was read"), {
    code: "ERR_STREAM_PREMATURE_CLOSE",
  });
}

/**
 * The file system calls of a write stream (its documented `fs` option), telling `written` after
 * each write has landed: a reader of the same file may read that far now.
 */
function notifyingWrites(written: () => void) {
  return {
    open,
    close,
    write: (
      fd: number,
      buffer: NodeJS.ArrayBufferView,
      offset: number,
      length: number,
      position: number | null,
      callback: (err: NodeJS.ErrnoException | null, bytes: number, buffer: NodeJS.ArrayBufferView) => void,
    ) => {
      write(fd, buffer, offset, length, position, (err, bytes, buf) => {
        callback(err, bytes, buf);
        if (!err) written();
      });
    },
    writev: (
      fd: number,
      buffers: NodeJS.ArrayBufferView[],
      position: number | null,
      callback: (err: NodeJS.ErrnoException | null, bytes: number, buffers: NodeJS.ArrayBufferView[]) => void,
    ) => {
      writev(fd, buffers, position, (err, bytes, bufs) => {
        callback(err, bytes, bufs);
        if (!err) written();
      });
    },
  };
}
