import {
  canTake,
  type Placement,
  type PlacementMachine,
  type PlacementPolicy,
  type PlacementTask,
} from "./policy.js";

/** Each task to the machine with the smallest share of its slots in use; speed is not considered. */
export const leastLoaded: PlacementPolicy = {
  name: "least-loaded",
  plan(tasks: readonly PlacementTask[], machines: readonly PlacementMachine[]): Placement[] {
    const used = new Map(machines.map((m) => [m.name, m.maxConcurrent - m.freeSlots]));
    const free = new Map(machines.map((m) => [m.name, m.freeSlots]));
    const placements: Placement[] = [];
    let freeLeft = machines.reduce((n, m) => n + m.freeSlots, 0);
    for (const task of tasks) {
      if (freeLeft <= 0) break;
      let best: PlacementMachine | undefined;
      for (const m of machines) {
        if ((free.get(m.name) ?? 0) <= 0 || !canTake(m, task)) continue;
        if (!best || load(m, used) < load(best, used)) best = m;
      }
      if (!best) continue;
      placements.push({ task, machine: best.name });
      freeLeft--;
      used.set(best.name, (used.get(best.name) ?? 0) + 1);
      free.set(best.name, (free.get(best.name) ?? 0) - 1);
    }
    return placements;
  },
};

function load(m: PlacementMachine, used: Map<string, number>): number {
  return (used.get(m.name) ?? 0) / m.maxConcurrent;
}
