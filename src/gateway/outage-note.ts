import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { TASK_NEEDS, type TaskNeed } from "../store/task-speech.js";
import type { TaskStore } from "../store/task-store.js";
import type { Fleet } from "./fleet.js";
import { type WaitingReason, waitingReason } from "./fleet-abilities.js";

export interface OutageNoteOptions {
  readonly fleet: Fleet;
  readonly store: TaskStore;
  readonly logger: Logger;
  /** Rows per transaction: 100k pending tasks must not hold the store in one write. */
  readonly batchSize?: number;
}

const DEFAULT_BATCH = 500;

/**
 * What a new task that needs `need` waits for when it is more than a free slot; the queued event of
 * the new task says the same as the notes below.
 */
export function waitingNote(fleet: Fleet, need: TaskNeed = "lipsync"): string | undefined {
  return waitingReason(fleet, need)?.message;
}

/**
 * When the last machine stops taking work, every pending task says so in its events ("waiting: 0
 * of 3 machines up"; issue 10: nothing hangs silently), once per outage: `check()` runs on every
 * change of the fleet, and the note is written when an outage begins, not on every probe. An
 * outage begins once every machine has been probed (a start-up with machines still `unknown` is
 * not one) and none takes work. Written in small batches off the request path.
 *
 * The same for what the up machines cannot do (issue 12): when none of them can speak, the pending
 * text tasks say so; when none can clone, the pending tasks with a voice. Each kind of task has its
 * own reason (fleet-abilities.ts), noted again only when the reason changes.
 */
export class OutageNote {
  /** The reason last noted on the pending tasks of each need, while it holds. */
  private readonly noted = new Map<TaskNeed, WaitingReason["key"]>();
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: OutageNoteOptions) {}

  check(): void {
    const { fleet } = this.o;
    const probed = !fleet.list().some((m) => m.state === "unknown");
    // Needs whose reason is new, grouped by reason: an outage of every machine is one note per task.
    const fresh = new Map<WaitingReason["key"], { reason: WaitingReason; needs: TaskNeed[] }>();
    for (const need of TASK_NEEDS) {
      const reason = waitingReason(fleet, need);
      if (reason === undefined) {
        this.noted.delete(need);
        continue;
      }
      if (this.noted.get(need) === reason.key || this.closed || !probed) continue;
      this.noted.set(need, reason.key);
      const group = fresh.get(reason.key) ?? { reason, needs: [] };
      group.needs.push(need);
      fresh.set(reason.key, group);
    }
    for (const { reason, needs } of fresh.values()) {
      this.writing = this.writing.then(() =>
        this.write(needs, reason).catch((err: unknown) =>
          this.o.logger.error({ err: errorMessage(err) }, "could not note the outage on pending tasks"),
        ),
      );
    }
  }

  /** Stops writing after the batch under way. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
  }

  private async write(needs: readonly TaskNeed[], reason: WaitingReason): Promise<void> {
    const { store } = this.o;
    const ids =
      needs.length === TASK_NEEDS.length
        ? await store.pendingTaskIds()
        : (await Promise.all(needs.map((need) => store.pendingTaskIds(need)))).flat();
    const still = () => needs.every((need) => this.noted.get(need) === reason.key);
    const batch = this.o.batchSize ?? DEFAULT_BATCH;
    let noted = 0;
    for (let i = 0; i < ids.length; i += batch) {
      // A machine back, or the gateway stopping: the rest would be out of date or unwanted.
      if (!still() || this.closed) break;
      noted += await store.noteWaiting(ids.slice(i, i + batch), reason.message);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (ids.length === 0) return;
    const what = reason.key === "no_machine_up" ? "no machine takes work" : "pending text tasks cannot start";
    this.o.logger.warn({ pending: ids.length, noted }, `${what}; ${reason.message}`);
  }
}
