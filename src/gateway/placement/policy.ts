import type { PlacementName } from "../../config/placement-names.js";
import { needMet, type TaskNeed } from "../../store/task-speech.js";

/**
 * Placement decides which pending task starts on which machine now. Policies are pure functions
 * of a snapshot, so they are tested with generated fleets (test/gateway/placement/*) and compared
 * in one benchmark run (bench/).
 */

export interface PlacementTask {
  readonly id: string;
  /** Seconds; the work a task costs is proportional to it. */
  readonly audioDuration: number;
  readonly videoSha256: string;
  readonly videoBytes: number;
  /** What it needs of a machine: lip-sync alone, text to speech, or a cloned voice (issue 12). */
  readonly need: TaskNeed;
  /**
   * Machines it must not go to: those it failed on for the machine's fault, while another machine
   * could take it (the scheduler decides; a machine's voice service can be down while it is up).
   */
  readonly avoid?: ReadonlySet<string>;
}

export interface PlacementMachine {
  readonly name: string;
  readonly maxConcurrent: number;
  /** Slots free now (may be 0: a full machine can still be worth waiting for). */
  readonly freeSlots: number;
  /** Estimated end times (ms) of the attempts running on it. */
  readonly busyUntil: readonly number[];
  /** Engine seconds per second of audio. */
  readonly speed: number;
  /** Whether the machine is believed to hold this blob already (no upload needed). */
  hasBlob(sha256: string): boolean;
  /** Bytes per millisecond when uploading to it. */
  readonly uploadBytesPerMs: number;
  /** The most a task may need of it (its /v1/health capabilities). */
  readonly can: TaskNeed;
}

/** Whether `machine` can take `task` at all: a text task only where it speaks (issue 12). */
export function canTake(machine: PlacementMachine, task: PlacementTask): boolean {
  return needMet(task.need, machine.can) && task.avoid?.has(machine.name) !== true;
}

export interface Placement {
  readonly task: PlacementTask;
  readonly machine: string;
}

/** A task the plan keeps for a busy slot: it is to start there when that slot frees. */
export interface Reservation extends Placement {
  /** When the slot is expected to be free (ms, the clock of `now`). */
  readonly at: number;
}

export interface PlacementPolicy {
  readonly name: PlacementName;
  /**
   * Given pending tasks in the order they should be served (priority, then age) and the machines
   * that accept work, returns the tasks to start now and where. Never more per machine than its
   * free slots, and never a task on a machine that cannot take it (`canTake`). A policy that plans
   * ahead tells `reserve` of each task it keeps for a busy slot, in service order, so that its
   * inputs can travel there while that slot still works (input-prefetch.ts).
   */
  plan(
    tasks: readonly PlacementTask[],
    machines: readonly PlacementMachine[],
    now: number,
    reserve?: (reservation: Reservation) => void,
  ): Placement[];
}
