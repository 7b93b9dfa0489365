import type { Logger } from "../logger.js";
import type { TaskStore } from "../store/task-store.js";
import type { Clock, Timer } from "./clock.js";
import type { Dispatcher } from "./dispatcher.js";

/**
 * The per-task overall timeout (`--task-timeout`): a task not finished this long after it was
 * created fails with a clear reason, whether it still waits for a machine or runs on one (its job
 * is then cancelled on the worker). It bounds how long a client can be kept waiting, whatever
 * goes wrong in between.
 */
export class TaskDeadline {
  private timer: Timer | undefined;
  private pass: Promise<void> | undefined;

  constructor(
    private readonly options: {
      clock: Clock;
      store: TaskStore;
      /** Ends a running task's attempt; false when the task has none. */
      dispatcher: Pick<Dispatcher, "endTask">;
      timeoutMs: number;
      checkEveryMs: number;
      logger: Logger;
    },
  ) {}

  start(): void {
    this.timer = this.options.clock.setInterval(() => void this.check(), this.options.checkEveryMs);
  }

  close(): void {
    this.timer?.cancel();
  }

  /** One pass over the overdue tasks; a call while a pass runs gets that pass, not a second one. */
  check(): Promise<void> {
    this.pass ??= this.endOverdue().finally(() => {
      this.pass = undefined;
    });
    return this.pass;
  }

  private async endOverdue(): Promise<void> {
    try {
      const { clock, store, dispatcher, timeoutMs } = this.options;
      const before = new Date(clock.now() - timeoutMs).toISOString();
      for (const task of await store.unfinishedCreatedBefore(before, 100)) {
        const message = `timed out: not finished within ${Math.round(timeoutMs / 1000)} s of its creation (--task-timeout)`;
        this.options.logger.warn({ task_id: task.id, status: task.status }, message);
        if (!(await dispatcher.endTask(task.id, message))) await store.failPendingTask(task.id, message);
      }
    } catch (err) {
      this.options.logger.error({ err }, "task deadline check failed");
    }
  }
}
