import { QueueFullError } from "../errors.js";
import type { TaskStore } from "../store/task-store.js";
import type { Clock } from "./clock.js";

/** Tasks leaving the queue remembered to measure how fast it drains. */
const DEPARTURES_KEPT = 64;
/** Retry-After when nothing has left the queue lately (no machine up, or just started). */
const UNKNOWN_DRAIN_SECONDS = 60;
const MAX_RETRY_AFTER_SECONDS = 3600;

/**
 * `--max-pending` (issue 9, "bounded work"): beyond it a new task is refused with 429 before its
 * upload is read, and nothing is stored. The count is the store's own running count plus the
 * uploads admitted but not yet recorded, so a burst of concurrent uploads cannot overshoot it.
 * `Retry-After` is the time the queue needs, at the rate it drained lately, to make room.
 */
export class QueueLimit {
  private admitted = 0;
  /** Clock times at which tasks left `pending` (started on a machine or failed), oldest first. */
  private readonly departures: number[] = [];

  constructor(
    private readonly store: TaskStore,
    private readonly clock: Clock,
    private readonly maxPending: number,
  ) {
    store.changes.on("change", ({ event }) => {
      // Cancels say nothing of how fast machines take the queue: emptying it would read as a
      // drain of thousands a second, and Retry-After would promise room that does not come.
      if (event.from_status !== "pending" || event.to_status === "cancelled") return;
      this.departures.push(clock.now());
      if (this.departures.length > DEPARTURES_KEPT) this.departures.shift();
    });
  }

  /** Takes a place in the queue for one upload; call the returned release once it is recorded or refused. */
  admit(): () => void {
    const waiting = this.store.pendingCount + this.admitted;
    if (waiting >= this.maxPending) {
      const retryAfter = this.retryAfterSeconds(waiting - this.maxPending + 1);
      throw new QueueFullError(
        `the queue holds ${this.maxPending} tasks, its limit; try again in about ${retryAfter} s`,
        retryAfter,
      );
    }
    this.admitted++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.admitted--;
    };
  }

  private retryAfterSeconds(needed: number): number {
    const first = this.departures[0];
    const span = first === undefined ? 0 : this.clock.now() - first;
    if (this.departures.length < 2 || span <= 0) return UNKNOWN_DRAIN_SECONDS;
    const perSecond = this.departures.length / (span / 1000);
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(needed / perSecond)));
  }
}
