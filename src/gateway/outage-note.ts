import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { TaskStore } from "../store/task-store.js";
import type { Fleet } from "./fleet.js";

export interface OutageNoteOptions {
  readonly fleet: Fleet;
  readonly store: TaskStore;
  readonly logger: Logger;
  /** Rows per transaction: 100k pending tasks must not hold the store in one write. */
  readonly batchSize?: number;
}

const DEFAULT_BATCH = 500;

/** What a task waits for when no machine takes work; the queued event of a new task says the same. */
export function waitingNote(fleet: Fleet): string | undefined {
  const { up, total } = fleet.availability();
  return up === 0 ? `waiting: 0 of ${total} machines up` : undefined;
}

/**
 * When the last machine stops taking work, every pending task says so in its events ("waiting: 0
 * of 3 machines up"; issue 10: nothing hangs silently), once per outage: `check()` runs on every
 * change of the fleet, and the note is written when an outage begins, not on every probe. An
 * outage begins once every machine has been probed (a start-up with machines still `unknown` is
 * not one) and none takes work. Written in small batches off the request path.
 */
export class OutageNote {
  private inOutage = false;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: OutageNoteOptions) {}

  check(): void {
    const { fleet } = this.o;
    const { up } = fleet.availability();
    if (up > 0) {
      this.inOutage = false;
      return;
    }
    if (this.inOutage || this.closed || fleet.list().some((m) => m.state === "unknown")) return;
    this.inOutage = true;
    const message = waitingNote(fleet);
    if (message === undefined) return;
    this.writing = this.writing.then(() =>
      this.write(message).catch((err: unknown) =>
        this.o.logger.error({ err: errorMessage(err) }, "could not note the outage on pending tasks"),
      ),
    );
  }

  /** Stops writing after the batch under way. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
  }

  private async write(message: string): Promise<void> {
    const { store } = this.o;
    const ids = await store.pendingTaskIds();
    const batch = this.o.batchSize ?? DEFAULT_BATCH;
    let noted = 0;
    for (let i = 0; i < ids.length; i += batch) {
      // A machine back, or the gateway stopping: the rest would be out of date or unwanted.
      if (!this.inOutage || this.closed) break;
      noted += await store.noteWaiting(ids.slice(i, i + batch), message);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (ids.length > 0)
      this.o.logger.warn({ pending: ids.length, noted }, `no machine takes work; ${message}`);
  }
}
