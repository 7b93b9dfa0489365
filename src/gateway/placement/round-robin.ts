import {
  canTake,
  type Placement,
  type PlacementMachine,
  type PlacementPolicy,
  type PlacementTask,
} from "./policy.js";

/** Machines take turns in name order, skipping those without a free slot. */
export function roundRobin(): PlacementPolicy {
  let next = 0;
  return {
    name: "round-robin",
    plan(tasks: readonly PlacementTask[], machines: readonly PlacementMachine[]): Placement[] {
      const ordered = [...machines].sort((a, b) => a.name.localeCompare(b.name));
      const free = new Map(ordered.map((m) => [m.name, m.freeSlots]));
      const placements: Placement[] = [];
      let freeLeft = ordered.reduce((n, m) => n + m.freeSlots, 0);
      for (const task of tasks) {
        if (freeLeft <= 0) break;
        let chosen: PlacementMachine | undefined;
        for (let i = 0; i < ordered.length && !chosen; i++) {
          const m = ordered[(next + i) % ordered.length];
          if (m && (free.get(m.name) ?? 0) > 0 && canTake(m, task)) {
            chosen = m;
            next = (next + i + 1) % ordered.length;
          }
        }
        if (!chosen) continue;
        placements.push({ task, machine: chosen.name });
        freeLeft--;
        free.set(chosen.name, (free.get(chosen.name) ?? 0) - 1);
      }
      return placements;
    },
  };
}
