import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import { TASK_NEEDS, type TaskNeed, taskNeed } from "../store/task-speech.js";
import type { TaskStore } from "../store/task-store.js";
import type { Clock, Timer } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";
import type { WaitingTask } from "./input-prefetch.js";
import {
  canTake,
  type PlacementMachine,
  type PlacementPolicy,
  type PlacementTask,
  type Reservation,
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
  /** Told, after each pass, of the tasks the placement keeps for busy slots (input-prefetch.ts). */
  prefetch?: { readonly ready: boolean; consider(waiting: readonly WaitingTask[]): void };
}

/** How far down the queue one pass looks, per slot in the fleet. */
const LOOKAHEAD_PER_SLOT = 4;

/**
 * A full fleet is looked at for templates to send ahead at most this often: with a backlog, every
 * task submitted wakes the scheduler, and the look-ahead would otherwise be read once per request.
 */
const FULL_FLEET_EVERY_MS = 200;

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
  /** When a full fleet was last looked at for templates to send ahead, and the look put off. */
  private fullLookAt = Number.NEGATIVE_INFINITY;
  private fullLookLater: Timer | undefined;

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
    this.fullLookLater?.cancel();
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
    const slots = machines.reduce((n, m) => n + m.capacity, 0);
    if (slots === 0) return;
    // A full fleet places nothing, but may have a template to send ahead to a busy machine.
    if (free === 0 && !this.fullFleetLookDue()) return;
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
    const reservations: Reservation[] = [];
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
      this.options.prefetch ? (r) => reservations.push(r) : undefined,
    );
    for (const { task, machine } of plan) {
      const row = byId.get(task.id);
      const target = this.options.fleet.get(machine);
      if (!row || !target?.placeable) continue;
      await this.options.dispatch(row, target);
    }
    const waiting: WaitingTask[] = [];
    for (const { task, machine } of reservations) {
      const row = byId.get(task.id);
      const target = this.options.fleet.get(machine);
      if (row && target) waiting.push({ task: row, machine: target });
    }
    if (waiting.length > 0) this.options.prefetch?.consider(waiting);
  }

  /** Whether a full fleet is to be looked at now; if not yet, a wake is set for when it is. */
  private fullFleetLookDue(): boolean {
    if (this.options.prefetch?.ready !== true) return false;
    const { clock } = this.options;
    const due = this.fullLookAt + FULL_FLEET_EVERY_MS;
    const now = clock.now();
    if (now >= due) {
      this.fullLookAt = now;
      return true;
    }
    this.fullLookLater ??= clock.setTimeout(() => {
      this.fullLookLater = undefined;
      this.wake();
    }, due - now);
    return false;
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
