import type { Logger } from "../logger.js";
import type { TaskStore } from "../store/task-store.js";
import type { Dispatcher } from "./dispatcher.js";

/**
 * The per-task overall timeout (`--task-timeout`): a task not finished this long after it was
 * created fails with a clear reason, whether it still waits for a machine or runs on one (its job
 * is then cancelled on the worker). It bounds how long a client can be kept waiting, whatever
 * goes wrong in between.
 */
export class TaskDeadline {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly options: {
      store: TaskStore;
      dispatcher: Dispatcher;
      timeoutMs: number;
      checkEveryMs: number;
      logger: Logger;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.options.checkEveryMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { store, dispatcher, timeoutMs } = this.options;
      const before = new Date(Date.now() - timeoutMs).toISOString();
      for (const task of await store.unfinishedCreatedBefore(before, 100)) {
        const message = `timed out: not finished within ${Math.round(timeoutMs / 1000)} s of its creation (--task-timeout)`;
        this.options.logger.warn({ task_id: task.id, status: task.status }, message);
        if (!(await dispatcher.endTask(task.id, message))) await store.failPendingTask(task.id, message);
      }
    } catch (err) {
      this.options.logger.error({ err }, "task deadline check failed");
    } finally {
      this.busy = false;
    }
  }
}
