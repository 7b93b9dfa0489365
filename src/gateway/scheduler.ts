import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import { TASK_NEEDS, type TaskNeed, taskNeed } from "../store/task-speech.js";
import type { TaskStore } from "../store/task-store.js";
import type { Clock } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";
import {
  canTake,
  type PlacementMachine,
  type PlacementPolicy,
  type PlacementTask,
} from "./placement/policy.js";
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
    const lookahead = Math.max(free, slots * LOOKAHEAD_PER_SLOT);
    // Only tasks some machine here can take: text tasks on a fleet that cannot speak would fill the
    // look-ahead and hide the audio tasks behind them.
    const can = widest(machines);
    const tasks = await this.options.store.pendingTasks(lookahead, can);
    if (tasks.length === 0) return;
    await this.place(tasks, machines);
    // A second look for free machines that can do less than the rest (no text to speech): the
    // look-ahead may have been all text tasks waiting for the machines that speak.
    const idle = machines.filter((m) => m.placeable && m.freeSlots > 0);
    const idleCan = widest(idle);
    if (
      tasks.length < lookahead ||
      idle.length === 0 ||
      TASK_NEEDS.indexOf(idleCan) >= TASK_NEEDS.indexOf(can)
    )
      return;
    const seen = new Set(tasks.map((t) => t.id));
    const more = await this.options.store.pendingTasks(seen.size + lookahead, idleCan);
    await this.place(
      more.filter((t) => !seen.has(t.id)),
      idle,
    );
  }

  private async place(tasks: readonly TaskRow[], machines: readonly Machine[]): Promise<void> {
    if (tasks.length === 0) return;
    const now = this.options.clock.now();
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const snapshots = machines.map((m) => this.snapshot(m, now));
    const failed = await this.options.store.machinesFailed(
      tasks.filter((t) => t.attempts > 0).map((t) => t.id),
    );
    const plan = this.options.placement.plan(
      tasks.map((t) => {
        const task: PlacementTask = {
          id: t.id,
          audioDuration: t.audio_duration,
          videoSha256: t.video_sha256,
          videoBytes: t.video_bytes,
          need: taskNeed(t),
        };
        const avoid = failed.get(t.id);
        // Elsewhere if anywhere else can: the machine it failed on may fail it again (issue 12).
        return avoid && snapshots.some((m) => !avoid.has(m.name) && canTake(m, task))
          ? { ...task, avoid }
          : task;
      }),
      snapshots,
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
      can: m.can ?? "lipsync",
    };
  }
}

/** The most any of `machines` can do (a machine up has answered, so its capabilities are known). */
function widest(machines: readonly Machine[]): TaskNeed {
  let rank = 0;
  for (const m of machines) rank = Math.max(rank, TASK_NEEDS.indexOf(m.can ?? "lipsync"));
  return TASK_NEEDS[rank] ?? "lipsync";
}
