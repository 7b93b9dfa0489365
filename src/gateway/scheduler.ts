import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import type { TaskStore } from "../store/task-store.js";
import type { Clock } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";
import type { PlacementMachine, PlacementPolicy } from "./placement/policy.js";
import type { SpeedModel } from "./speed-model.js";

export interface SchedulerOptions {
  clock: Clock;
  store: TaskStore;
  fleet: Fleet;
  speeds: SpeedModel;
  placement: PlacementPolicy;
  logger: Logger;
  /**
   * Hands a task to a machine; claims the slot on `machine` before its first await, and answers
   * false when it has none free (Machine.tryClaim is the one place `max_concurrent` is enforced).
   */
  dispatch: (task: TaskRow, machine: Machine) => Promise<boolean>;
}

/** How far down the queue one pass looks, per slot in the fleet. */
const LOOKAHEAD_PER_SLOT = 4;

/**
 * Event-driven placement (design.md, "Scheduling"): a new task, a finished attempt, a machine
 * coming up or a config reload calls `wake()`, which asks the placement policy which pending tasks
 * (priority, then age) start where. Wakes that arrive while a pass runs fold into one more pass,
 * never a parallel one, so two passes can never both fill the last slot of a machine.
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
    const machines = this.options.fleet.list().filter((m) => m.placeable);
    const free = machines.reduce((n, m) => n + m.freeSlots, 0);
    if (free === 0) return;
    const slots = machines.reduce((n, m) => n + m.capacity, 0);
    const tasks = await this.options.store.pendingTasks(Math.max(free, slots * LOOKAHEAD_PER_SLOT));
    if (tasks.length === 0) return;
    const now = this.options.clock.now();
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const plan = this.options.placement.plan(
      tasks.map((t) => ({
        id: t.id,
        audioDuration: t.audio_duration,
        videoSha256: t.video_sha256,
        videoBytes: t.video_bytes,
      })),
      machines.map((m) => this.snapshot(m, now)),
      now,
    );
    for (const { task, machine } of plan) {
      const row = byId.get(task.id);
      const target = this.options.fleet.get(machine);
      if (!row || !target?.placeable) continue;
      await this.options.dispatch(row, target);
    }
  }

  private snapshot(m: Machine, now: number): PlacementMachine {
    const speed = this.options.speeds.speed(m.name);
    return {
      name: m.name,
      maxConcurrent: m.capacity,
      freeSlots: m.freeSlots,
      busyUntil: [...m.running.values()].map((a) =>
        Math.max(now, a.startedAt + a.audioDuration * speed * 1000),
      ),
      speed,
      uploadBytesPerMs: m.uploadBytesPerMs,
      hasBlob: (sha) => m.hasBlob(sha),
    };
  }
}
