import { setImmediate as yieldToIo } from "node:timers/promises";
import type { BlobStore } from "../blobs/blob-store.js";
import type { Logger } from "../logger.js";
import type { Released, RetentionStore } from "../store/retention-store.js";
import type { Clock, Timer } from "./clock.js";

/** Why blobs or tasks went: `--retention`, a `DELETE /tasks/{id}`, or files nothing referenced. */
export type DeletionReason = "retention" | "request" | "orphan";

/** What the metrics count of a deletion (gateway-metrics.ts). */
export interface DeletionCounters {
  filesExpired(tasks: number): void;
  tasksDeleted(reason: DeletionReason, tasks: number): void;
  blobsDeleted(reason: DeletionReason, blobs: number, bytes: number): void;
}

export interface RetentionSweeperOptions {
  readonly clock: Clock;
  readonly store: RetentionStore;
  readonly blobs: BlobStore;
  /** The store itself, for the re-check after a blob is moved aside. */
  readonly needed: (sha256: string) => Promise<boolean>;
  readonly logger: Logger;
  readonly counters?: DeletionCounters | undefined;
  /** `--retention`: a finished task's files go this long after it ended; 0 = never. */
  readonly retentionMs: number;
  /** `--retention-rows`: its rows this long after it ended; 0 = never. */
  readonly retentionRowsMs: number;
  /** How often a sweep runs. */
  readonly everyMs: number;
  /** Tasks per transaction. */
  readonly batchSize?: number;
  /** Blob files and media facts no row needs are deleted once this old. */
  readonly orphanAgeMs?: number;
  /** How often the (whole-directory) orphan walk runs; it also runs with the first sweep. */
  readonly orphanEveryMs?: number;
}

/** What one sweep did, as logged. */
export interface SweepReport {
  files_expired: number;
  tasks_deleted: number;
  blobs_deleted: number;
  bytes_deleted: number;
  orphan_blobs: number;
  orphan_bytes: number;
  orphan_facts: number;
}

const BATCH = 100;
const HOUR = 3_600_000;

/** A sweep every tenth of the shortest retention, at least every minute, at most every 100 ms. */
export function sweepInterval(retentionMs: number, retentionRowsMs: number): number {
  const spans = [retentionMs, retentionRowsMs].filter((ms) => ms > 0);
  if (spans.length === 0) return 60_000;
  return Math.min(60_000, Math.max(100, Math.floor(Math.min(...spans) / 10)));
}

/**
 * Retention (issue 10): nothing the gateway stores grows forever. Each sweep releases the files
 * of tasks finished longer than `--retention` ago, then deletes the records of those finished
 * longer than `--retention-rows` ago, then (hourly) files and media facts that no row needs at
 * all, such as those a crash left between writing a file and recording its task. It works in
 * batches of `batchSize` tasks, one short transaction each, yielding to the event loop between
 * them, so the API never waits for more than one batch. `DELETE /tasks/{id}` goes through here
 * too, so a blob shared with another task is kept the same way.
 */
export class RetentionSweeper {
  private timer: Timer | undefined;
  private pass: Promise<SweepReport> | undefined;
  private lastOrphanWalk: number | undefined;
  private readonly batchSize: number;
  private readonly orphanAgeMs: number;
  private readonly orphanEveryMs: number;

  constructor(private readonly o: RetentionSweeperOptions) {
    this.batchSize = o.batchSize ?? BATCH;
    this.orphanAgeMs = o.orphanAgeMs ?? HOUR;
    this.orphanEveryMs = o.orphanEveryMs ?? HOUR;
  }

  start(): void {
    this.timer = this.o.clock.setInterval(() => void this.sweep().catch(() => undefined), this.o.everyMs);
  }

  close(): Promise<void> {
    this.timer?.cancel();
    return this.pass?.then(() => undefined) ?? Promise.resolve();
  }

  /** One sweep; a call while one runs gets that one, not a second. Never rejects. */
  sweep(): Promise<SweepReport> {
    this.pass ??= this.sweepOnce().finally(() => {
      this.pass = undefined;
    });
    return this.pass;
  }

  /**
   * Deletes a finished task, its rows and the files no other task needs; false when the task is
   * not finished (any more) or not there.
   */
  async deleteTask(taskId: string): Promise<boolean> {
    const released = await this.o.store.deleteFinished([taskId]);
    if (released.tasks.length === 0) return false;
    this.o.counters?.tasksDeleted("request", 1);
    const { blobs, bytes } = await this.removeBlobs(released.blobs);
    this.o.counters?.blobsDeleted("request", blobs, bytes);
    return true;
  }

  /**
   * Deletes the files of `shas` that no row needs once moved aside (a DELETE /avatars/{id} whose
   * video no task needs either), counted as deleted on request.
   */
  async releaseBlobs(shas: readonly string[]): Promise<void> {
    const { blobs, bytes } = await this.removeBlobs(shas);
    if (blobs > 0) this.o.counters?.blobsDeleted("request", blobs, bytes);
  }

  private async sweepOnce(): Promise<SweepReport> {
    const report: SweepReport = {
      files_expired: 0,
      tasks_deleted: 0,
      blobs_deleted: 0,
      bytes_deleted: 0,
      orphan_blobs: 0,
      orphan_bytes: 0,
      orphan_facts: 0,
    };
    const { clock, retentionMs, retentionRowsMs, logger } = this.o;
    const now = clock.now();
    try {
      if (retentionMs > 0) {
        const cutoff = new Date(now - retentionMs).toISOString();
        await this.inBatches(
          () => this.o.store.expireFiles(cutoff, this.batchSize),
          (n) => {
            report.files_expired += n;
            this.o.counters?.filesExpired(n);
          },
          report,
        );
      }
      if (retentionRowsMs > 0) {
        const cutoff = new Date(now - retentionRowsMs).toISOString();
        await this.inBatches(
          async () => this.o.store.deleteFinished(await this.o.store.recordsDue(cutoff, this.batchSize)),
          (n) => {
            report.tasks_deleted += n;
            this.o.counters?.tasksDeleted("retention", n);
          },
          report,
        );
      }
      if (this.lastOrphanWalk === undefined || now - this.lastOrphanWalk >= this.orphanEveryMs) {
        this.lastOrphanWalk = now;
        await this.removeOrphans(now, report);
      }
    } catch (err) {
      logger.error({ err }, "retention sweep failed; the next one tries again");
    }
    if (Object.values(report).some((n) => n > 0)) logger.info(report, "retention sweep");
    return report;
  }

  /** Releases batch after batch until one comes back short, deleting the freed files of each. */
  private async inBatches(
    release: () => Promise<Released>,
    count: (tasks: number) => void,
    report: SweepReport,
  ): Promise<void> {
    for (;;) {
      const released = await release();
      if (released.tasks.length > 0) count(released.tasks.length);
      const { blobs, bytes } = await this.removeBlobs(released.blobs);
      report.blobs_deleted += blobs;
      report.bytes_deleted += bytes;
      this.o.counters?.blobsDeleted("retention", blobs, bytes);
      if (released.tasks.length < this.batchSize) return;
      // Let the API's requests in between two transactions.
      await yieldToIo();
    }
  }

  private async removeBlobs(shas: readonly string[]): Promise<{ blobs: number; bytes: number }> {
    let blobs = 0;
    let bytes = 0;
    for (const sha of shas) {
      const freed = await this.o.blobs.removeUnlessNeeded(sha, () => this.o.needed(sha));
      if (freed > 0) {
        blobs++;
        bytes += freed;
      }
    }
    return { blobs, bytes };
  }

  /**
   * Files in the blob store and media facts that no row needs, older than `orphanAgeMs`. The age
   * is a second guard only: the move-aside-then-check protocol of `removeUnlessNeeded` already
   * keeps a file whose task is being recorded at this moment.
   */
  private async removeOrphans(now: number, report: SweepReport): Promise<void> {
    const oldEnough = now - this.orphanAgeMs;
    let page: string[] = [];
    const flush = async () => {
      for (const sha of await this.o.store.unneededOf(page)) {
        const freed = await this.o.blobs.removeUnlessNeeded(sha, () => this.o.needed(sha));
        if (freed > 0) {
          report.orphan_blobs++;
          report.orphan_bytes += freed;
          this.o.counters?.blobsDeleted("orphan", 1, freed);
        }
      }
      page = [];
      await yieldToIo();
    };
    for await (const blob of this.o.blobs.list()) {
      if (blob.mtimeMs >= oldEnough) continue;
      page.push(blob.sha256);
      if (page.length >= this.batchSize) await flush();
    }
    await flush();

    const before = new Date(oldEnough).toISOString();
    let after = "";
    for (;;) {
      const shas = await this.o.store.factsPage(after, before, this.batchSize);
      if (shas.length === 0) break;
      after = shas[shas.length - 1] ?? after;
      const unneeded = await this.o.store.unneededOf(shas);
      // A fact whose file is still there goes with the file, above or in a later walk.
      const fileless: string[] = [];
      for (const sha of unneeded) if (!(await this.o.blobs.has(sha))) fileless.push(sha);
      await this.o.store.forgetFacts(fileless);
      report.orphan_facts += fileless.length;
      if (shas.length < this.batchSize) break;
      await yieldToIo();
    }
  }
}
