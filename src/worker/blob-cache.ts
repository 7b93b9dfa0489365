import { readdir, stat, statfs, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { BlobInfo, BlobStore, StagedBlob, StageOptions } from "../blobs/blob-store.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";

/** The part of `fs.statfs`'s answer the cache needs; injectable so tests can pick a disk. */
export interface DiskStats {
  readonly bsize: number;
  readonly blocks: number;
  readonly bavail: number;
}
export type StatFs = (path: string) => Promise<DiskStats>;

/** Without --cache-max-gb the cache may take this share of the file system under the data dir. */
export const DEFAULT_CACHE_SHARE = 0.25;

/**
 * An upload is for a job the gateway is about to create: it stays this long, or until a job takes
 * it, whichever comes first, so that a cache smaller than one task's inputs does not throw the
 * video away while the audio is still on its way (the gateway would upload them forever).
 */
export const UPLOAD_HOLD_MS = 10 * 60_000;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** `--cache-max-gb` when not given: a quarter of the disk the data dir is on. */
export async function defaultCacheMaxBytes(dataDir: string, fs: StatFs = statfs): Promise<number> {
  const disk = await fs(dataDir);
  return Math.floor(disk.blocks * disk.bsize * DEFAULT_CACHE_SHARE);
}

export interface BlobCacheOptions {
  /** The worker's own blobs: uploads land here, and only these are ever evicted. */
  readonly store: BlobStore;
  /**
   * Another process's blobs in the same layout (the embedded worker reads the gateway's), looked
   * in after `store`. Never written, touched or evicted: their owner (the gateway's retention)
   * keeps them. Eviction only ever concerns `store`.
   */
  readonly shared?: BlobStore;
  /** Soft limit on `store`'s bytes; 0: none. */
  readonly maxBytes: number;
  /** Blobs a queued or running job needs: never evicted. */
  readonly pinned: () => ReadonlySet<string>;
  readonly now: () => number;
  readonly logger: Logger;
  readonly onEvicted?: (count: number) => void;
}

/**
 * The worker's input cache (issue 10): the blob store with a size limit, emptied least recently
 * used first. The order is kept in memory (a Map in use order) and on disk as each file's mtime,
 * touched on every use, because atime is off on most servers (noatime); a restart rebuilds the
 * order from the mtimes. The limit is soft: what queued or running jobs need, or what was just
 * uploaded for a job, stays even over it. Only a disk that is really full refuses an upload.
 */
export class BlobCache {
  /** sha256 → bytes, least recently used first. */
  private readonly index = new Map<string, number>();
  private total = 0;
  /** Uploads waiting for their job (sha256 → until when). */
  private readonly uploadHolds = new Map<string, number>();
  /** Blobs being checked for a job that is being accepted (sha256 → how many such checks). */
  private readonly submitHolds = new Map<string, number>();
  private evicting: Promise<void> | undefined;
  private evictAgain = false;
  private warnedStuck = false;

  constructor(private readonly o: BlobCacheOptions) {}

  get bytes(): number {
    return this.total;
  }

  get maxBytes(): number {
    return this.o.maxBytes;
  }

  /** Sweeps unfinished writes and rebuilds the use order from the files' mtimes. */
  async init(): Promise<void> {
    await this.o.store.init();
    const found: { sha256: string; bytes: number; mtimeMs: number }[] = [];
    for (const fan of await readdir(this.o.store.root)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const name of await readdir(join(this.o.store.root, fan)).catch(() => [])) {
        if (!SHA256_HEX.test(name) || !name.startsWith(fan)) continue;
        const s = await stat(join(this.o.store.root, fan, name)).catch(() => undefined);
        if (s?.isFile()) found.push({ sha256: name, bytes: s.size, mtimeMs: s.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const blob of found) this.put(blob.sha256, blob.bytes);
  }

  async has(sha256: string): Promise<BlobInfo | undefined> {
    if (this.index.has(sha256)) {
      const own = await this.o.store.has(sha256);
      if (own) return own;
      // Removed behind the agent's back: the index follows the disk.
      this.drop(sha256);
    }
    return this.o.shared?.has(sha256);
  }

  /**
   * Places a blob in a job's work dir (a hard link, or a copy across file systems) and counts it
   * as used.
   */
  async linkTo(sha256: string, dest: string): Promise<void> {
    if (this.index.has(sha256) || !this.o.shared) {
      await this.o.store.linkTo(sha256, dest);
      await this.touch(sha256);
      return;
    }
    await this.o.shared.linkTo(sha256, dest);
  }

  /** Streams an upload into the store; committing it adds it to the cache (see `added`). */
  async stage(source: Readable, options: StageOptions = {}): Promise<StagedBlob> {
    const staged = await this.o.store.stage(source, options);
    return {
      ...staged,
      commit: async () => {
        const path = await staged.commit();
        this.added(staged.sha256, staged.bytes);
        return path;
      },
    };
  }

  /** An upload of a blob already held: it is as good as a new one for the job it announces. */
  async uploadedAgain(sha256: string): Promise<void> {
    if (!this.index.has(sha256)) return;
    this.uploadHolds.set(sha256, this.o.now() + UPLOAD_HOLD_MS);
    await this.touch(sha256);
  }

  /**
   * Keeps `sha256s` while a job that needs them is being accepted; the returned function ends the
   * hold (by then the job, if accepted, pins them).
   */
  hold(sha256s: readonly string[]): () => void {
    for (const sha of sha256s) this.submitHolds.set(sha, (this.submitHolds.get(sha) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const sha of sha256s) {
        const n = (this.submitHolds.get(sha) ?? 1) - 1;
        if (n <= 0) this.submitHolds.delete(sha);
        else this.submitHolds.set(sha, n);
      }
    };
  }

  /** A job took these blobs: they count as used, and the job's pin replaces the upload's hold. */
  async used(sha256s: readonly string[]): Promise<void> {
    for (const sha of sha256s) {
      this.uploadHolds.delete(sha);
      await this.touch(sha);
    }
  }

  /** Removes a blob of the worker's own (the gateway takes back a forwarded upload). */
  async remove(sha256: string): Promise<void> {
    if (!this.index.has(sha256)) return;
    this.drop(sha256);
    await this.o.store.remove(sha256);
  }

  /**
   * Free bytes on the data dir's disk once what the cache may give up is gone, for an upload of
   * `bytes`: evicts least recently used blobs until the upload fits or nothing more can go.
   */
  async makeRoom(bytes: number, fs: StatFs): Promise<number> {
    const free = async () => {
      const disk = await fs(this.o.store.root);
      return disk.bavail * disk.bsize;
    };
    let available = await free();
    while (available < bytes) {
      const victim = this.nextVictim();
      if (victim === undefined) break;
      await this.evictOne(victim);
      available = await free();
    }
    return available;
  }

  /**
   * Evicts least recently used blobs until the cache is under its limit, skipping pinned and held
   * ones. Runs one at a time; a call during a run makes it go round once more.
   */
  evict(): Promise<void> {
    if (this.evicting) {
      this.evictAgain = true;
      return this.evicting;
    }
    this.evicting = (async () => {
      try {
        do {
          this.evictAgain = false;
          await this.evictToLimit();
        } while (this.evictAgain);
      } catch (err) {
        this.o.logger.warn({ err: errorMessage(err) }, "blob cache eviction failed");
      } finally {
        this.evicting = undefined;
      }
    })();
    return this.evicting;
  }

  private async evictToLimit(): Promise<void> {
    const limit = this.o.maxBytes;
    if (limit <= 0) return;
    while (this.total > limit) {
      const victim = this.nextVictim();
      if (victim === undefined) {
        if (!this.warnedStuck) {
          this.warnedStuck = true;
          this.o.logger.warn(
            { cache_bytes: this.total, cache_max_bytes: limit },
            "blob cache over --cache-max-gb: what is left is needed by queued or running jobs",
          );
        }
        return;
      }
      await this.evictOne(victim);
    }
    this.warnedStuck = false;
  }

  /** The least recently used blob that nothing needs; decided and dropped from the index at once. */
  private nextVictim(): string | undefined {
    const pinned = this.o.pinned();
    const now = this.o.now();
    for (const sha of this.index.keys()) {
      if (pinned.has(sha) || this.submitHolds.has(sha)) continue;
      const until = this.uploadHolds.get(sha);
      if (until !== undefined && until > now) continue;
      return sha;
    }
    return undefined;
  }

  private async evictOne(sha256: string): Promise<void> {
    const bytes = this.index.get(sha256) ?? 0;
    // Out of the index before the file goes, so a job being accepted meanwhile asks for an upload
    // instead of finding a file that is about to vanish. Jobs that run hold their own links.
    this.drop(sha256);
    this.o.onEvicted?.(1);
    await this.o.store.remove(sha256);
    this.o.logger.debug({ sha256, bytes }, "blob evicted from the cache");
  }

  private added(sha256: string, bytes: number): void {
    this.put(sha256, bytes);
    this.uploadHolds.set(sha256, this.o.now() + UPLOAD_HOLD_MS);
    void this.evict();
  }

  private put(sha256: string, bytes: number): void {
    this.drop(sha256);
    this.index.set(sha256, bytes);
    this.total += bytes;
  }

  private drop(sha256: string): void {
    const bytes = this.index.get(sha256);
    if (bytes === undefined) return;
    this.index.delete(sha256);
    this.total -= bytes;
    this.uploadHolds.delete(sha256);
  }

  /** Most recently used now, in memory and in the file's mtime (for the next start). */
  private async touch(sha256: string): Promise<void> {
    const bytes = this.index.get(sha256);
    if (bytes === undefined) return;
    this.index.delete(sha256);
    this.index.set(sha256, bytes);
    const at = new Date(this.o.now());
    await utimes(this.o.store.path(sha256), at, at).catch(() => undefined);
  }
}
