import { setImmediate as nextTurn } from "node:timers/promises";
import type { BlobStore } from "../blobs/blob-store.js";
import { AppError, ConflictError, NotFoundError } from "../errors.js";
import { forLog, type Logger } from "../logger.js";
import { FINAL_TASK_STATUSES, RETRYABLE_TASK_STATUSES, type TaskRow } from "../store/schema.js";
import type { TaskStore } from "../store/task-store.js";
import type { QueueLimit } from "./queue-limit.js";

export interface TaskLifecycleOptions {
  store: TaskStore;
  blobs: BlobStore;
  /** `--max-pending`: a retried task joins the queue like a new one. */
  queue: Pick<QueueLimit, "admit">;
  logger: Logger;
  /** A task joined the queue: place it. */
  onQueued: () => void;
  /** Tasks per transaction of the bulk cancel. */
  batchSize?: number;
}

export const CANCELLED_MESSAGE = "cancelled by a client";
const QUEUE_EMPTIED_MESSAGE = "cancelled with the whole queue (POST /tasks/cancel)";
const DEFAULT_BATCH = 100;
/** A task moves at most a few times while one cancel looks at it (pending → processing, say). */
const CANCEL_TRIES = 5;

/**
 * What a client may do to a task after creating it (issue 10): cancel it, retry it once it failed
 * or was cancelled, or empty the whole queue. The store decides each move in one transaction; the
 * dispatching gateway stops a cancelled attempt's job on its machine when it hears of the change.
 */
export class TaskLifecycle {
  constructor(private readonly o: TaskLifecycleOptions) {}

  /**
   * Cancels a task that has not finished. Answers once the store says `cancelled` (a sync waiter
   * answers then too); the running job, if any, is stopped on its machine in the background.
   */
  async cancel(task: TaskRow): Promise<TaskRow> {
    let current = task;
    for (let tries = 0; tries < CANCEL_TRIES; tries++) {
      if (FINAL_TASK_STATUSES.has(current.status)) {
        throw new ConflictError("TASK_FINISHED", `task ${task.id} is already ${current.status}`);
      }
      const from = current.status === "processing" ? "processing" : "pending";
      const cancelled = await this.o.store.cancelTask(task.id, from, CANCELLED_MESSAGE);
      if (cancelled) {
        // The dispatching gateway (this one or another, issue 13) stops the job on its machine
        // when it hears of the change (dispatch-duties.ts).
        this.log(cancelled).info({ from }, "task cancelled");
        return cancelled;
      }
      // It moved between the read and the write (dispatched, say): look again.
      const now = await this.o.store.getTask(task.id);
      if (!now) throw new NotFoundError(`no task ${task.id}`);
      current = now;
    }
    throw new ConflictError("TASK_FINISHED", `task ${task.id} kept changing; try again`);
  }

  /** Queues a failed or cancelled task again under its id, while its input files are still kept. */
  async retry(task: TaskRow): Promise<TaskRow> {
    const from = task.status;
    if (from !== "failed" && from !== "cancelled") {
      throw new ConflictError(
        "TASK_NOT_RETRYABLE",
        `task ${task.id} is ${from}; only a ${[...RETRYABLE_TASK_STATUSES].join(" or ")} task can be retried`,
      );
    }
    const [audio, video] = await Promise.all([
      // A text task that was not spoken has no audio file: it speaks its text again.
      task.speech !== null && task.audio_sha256 === "" ? true : this.o.blobs.has(task.audio_sha256),
      this.o.blobs.has(task.video_sha256),
    ]);
    if (!audio || !video) {
      const gone = [audio ? undefined : "audio", video ? undefined : "video"].filter(Boolean).join(" and ");
      throw new AppError(
        "INPUTS_DELETED",
        `the ${gone} of task ${task.id} was deleted (retention); create a new task with the files`,
      );
    }
    const release = this.o.queue.admit();
    let retried: TaskRow | undefined;
    try {
      retried = await this.o.store.retryTask(task.id, from);
    } finally {
      release();
    }
    if (!retried) {
      const now = await this.o.store.getTask(task.id);
      if (now?.files_deleted_at) {
        throw new AppError(
          "INPUTS_DELETED",
          `the files of task ${task.id} were deleted (retention); create a new task with the files`,
        );
      }
      throw new ConflictError(
        "TASK_NOT_RETRYABLE",
        `task ${task.id} is ${now?.status ?? "gone"}; only a failed or cancelled task can be retried`,
      );
    }
    this.log(retried).info({ from }, "task retried");
    this.o.onQueued();
    return retried;
  }

  /**
   * Cancels every pending task, a batch per transaction, letting other work run between batches:
   * a queue of 100k tasks is emptied without holding the store for the whole of it.
   */
  async cancelPending(): Promise<number> {
    const batch = this.o.batchSize ?? DEFAULT_BATCH;
    let total = 0;
    for (;;) {
      const n = await this.o.store.cancelPendingBatch(batch, QUEUE_EMPTIED_MESSAGE);
      total += n;
      if (n < batch) break;
      await nextTurn();
    }
    this.o.logger.info({ cancelled: total }, "pending tasks cancelled");
    return total;
  }

  private log(task: TaskRow): Logger {
    return this.o.logger.child({
      task_id: task.id,
      ...(task.description ? { description: forLog(task.description) } : {}),
    });
  }
}
