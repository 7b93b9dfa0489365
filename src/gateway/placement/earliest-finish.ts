import {
  canTake,
  type Placement,
  type PlacementMachine,
  type PlacementPolicy,
  type PlacementTask,
  type Reservation,
} from "./policy.js";

interface Slot {
  /** When this slot is expected to be free (ms). */
  freeAt: number;
  /** Free right now, so a task given to it can start at once. */
  open: boolean;
}

/**
 * Earliest estimated finish (the list-scheduling rule of HEFT): each task, in service order, goes
 * to the slot where it would finish first — counting the machine's measured speed, the upload its
 * video needs unless the machine has it, and when a busy slot frees up. A task whose best slot is
 * still busy waits for it rather than taking a slower free machine, and its reservation keeps later
 * tasks from counting on that slot; later tasks may still use free slots it did not want. Each such
 * reservation is told to `reserve`.
 */
export const earliestFinish: PlacementPolicy = {
  name: "earliest-finish",
  plan(
    tasks: readonly PlacementTask[],
    machines: readonly PlacementMachine[],
    now: number,
    reserve?: (reservation: Reservation) => void,
  ): Placement[] {
    const slots = new Map<string, Slot[]>();
    const blobsPlaced = new Map<string, Set<string>>();
    for (const m of machines) {
      const list: Slot[] = [];
      for (let i = 0; i < m.freeSlots; i++) list.push({ freeAt: now, open: true });
      // A full machine's slots free up as its attempts end; overdue ones any moment now.
      const ends = [...m.busyUntil].sort((a, b) => a - b);
      for (let i = 0; list.length < m.maxConcurrent && i < ends.length; i++) {
        list.push({ freeAt: Math.max(now + 1, ends[i] ?? now), open: false });
      }
      slots.set(m.name, list);
      blobsPlaced.set(m.name, new Set());
    }
    let openLeft = machines.reduce((n, m) => n + m.freeSlots, 0);
    const placements: Placement[] = [];
    // Machines told of a reservation: once the free slots are filled, planning goes on only until
    // each machine has its next task (what a prefetch needs), not down the whole look-ahead.
    const reservedOn = new Set<string>();
    for (const task of tasks) {
      if (openLeft === 0 && (!reserve || reservedOn.size === machines.length)) break;
      let best: { machine: PlacementMachine; slot: Slot; finish: number } | undefined;
      for (const m of machines) {
        if (!canTake(m, task)) continue;
        const slot = earliest(slots.get(m.name) ?? []);
        if (!slot) continue;
        const hasVideo =
          m.hasBlob(task.videoSha256) || blobsPlaced.get(m.name)?.has(task.videoSha256) === true;
        const upload = hasVideo ? 0 : task.videoBytes / Math.max(m.uploadBytesPerMs, 1e-6);
        const finish = slot.freeAt + upload + task.audioDuration * m.speed * 1000;
        if (!best || finish < best.finish || (finish === best.finish && slot.open && !best.slot.open)) {
          best = { machine: m, slot, finish };
        }
      }
      // No machine here can take it (a text task on a fleet that does not speak): the next may fit.
      if (!best) continue;
      if (best.slot.open) {
        placements.push({ task, machine: best.machine.name });
        openLeft--;
      } else if (reserve) {
        reserve({ task, machine: best.machine.name, at: best.slot.freeAt });
        reservedOn.add(best.machine.name);
      }
      best.slot.freeAt = best.finish;
      best.slot.open = false;
      blobsPlaced.get(best.machine.name)?.add(task.videoSha256);
    }
    return placements;
  },
};

function earliest(slots: Slot[]): Slot | undefined {
  let best: Slot | undefined;
  for (const s of slots)
    if (!best || s.freeAt < best.freeAt || (s.freeAt === best.freeAt && s.open)) best = s;
  return best;
}
