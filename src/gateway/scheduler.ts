import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import type { TaskStore } from "../store/task-store.js";
import type { Fleet, Machine } from "./fleet.js";

export interface SchedulerOptions {
  store: TaskStore;
  fleet: Fleet;
  logger: Logger;
  /** Hands a task to a machine; must claim a slot on `machine` synchronously before awaiting. */
  dispatch: (task: TaskRow, machine: Machine) => Promise<boolean>;
}

/**
 * Event-driven placement (design.md, "Scheduling"): a new task, a finished attempt or a machine
 * coming up calls `wake()`, which assigns pending tasks (priority, then age) to machines with a
 * free slot. Wakes that arrive while a pass runs fold into one more pass, never a parallel one,
 * so two passes can never both fill the last slot of a machine.
 */
export class Scheduler {
  private running = false;
  private again = false;
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {}

  wake(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  close(): void {
    this.closed = true;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.pass();
      } while (this.again && !this.closed);
    } catch (err) {
      this.options.logger.error({ err }, "scheduling pass failed");
    } finally {
      this.running = false;
    }
  }

  private async pass(): Promise<void> {
    const free = this.options.fleet.list().reduce((n, m) => n + (m.acceptsWork ? m.freeSlots : 0), 0);
    if (free === 0) return;
    const tasks = await this.options.store.pendingTasks(free);
    for (const task of tasks) {
      const machine = this.pick();
      if (!machine) return;
      await this.options.dispatch(task, machine);
    }
  }

  /** Least loaded first (share of slots in use), so equal machines fill evenly. */
  private pick(): Machine | undefined {
    let best: Machine | undefined;
    for (const m of this.options.fleet.list()) {
      if (!m.acceptsWork) continue;
      if (!best || load(m) < load(best)) best = m;
    }
    return best;
  }
}

function load(m: Machine): number {
  return m.running.size / m.spec.max_concurrent;
}
