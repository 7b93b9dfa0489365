import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createPlacement, PLACEMENT_NAMES } from "../../../src/gateway/placement/index.js";
import {
  canTake,
  type PlacementMachine,
  type PlacementTask,
  type Reservation,
} from "../../../src/gateway/placement/policy.js";
import { needMet, TASK_NEEDS, type TaskNeed } from "../../../src/store/task-speech.js";

const NOW = 1_000_000;

function machine(name: string, over: Partial<Omit<PlacementMachine, "hasBlob">> & { blobs?: string[] } = {}) {
  const blobs = new Set(over.blobs ?? []);
  return {
    name,
    maxConcurrent: over.maxConcurrent ?? 1,
    freeSlots: over.freeSlots ?? over.maxConcurrent ?? 1,
    busyUntil: over.busyUntil ?? [],
    speed: over.speed ?? 1,
    uploadBytesPerMs: over.uploadBytesPerMs ?? 50_000,
    hasBlob: (sha: string) => blobs.has(sha),
    can: over.can ?? "lipsync",
  } satisfies PlacementMachine;
}

function task(
  id: string,
  audioDuration = 10,
  video = "v",
  videoBytes = 1_000_000,
  need: TaskNeed = "lipsync",
): PlacementTask {
  return { id, audioDuration, videoSha256: video, videoBytes, need };
}

const needArb = fc.constantFrom(...TASK_NEEDS);

const machineArb = fc
  .record({
    maxConcurrent: fc.integer({ min: 1, max: 4 }),
    used: fc.integer({ min: 0, max: 4 }),
    speed: fc.double({ min: 0.05, max: 8, noNaN: true }),
    blobs: fc.subarray(["a", "b", "c"]),
    can: needArb,
  })
  .map((m) => ({ ...m, used: Math.min(m.used, m.maxConcurrent) }));
const fleetArb = fc.array(machineArb, { minLength: 1, maxLength: 6 }).map((ms) =>
  ms.map((m, i) =>
    machine(`m${i}`, {
      maxConcurrent: m.maxConcurrent,
      freeSlots: m.maxConcurrent - m.used,
      busyUntil: Array.from({ length: m.used }, (_, k) => NOW + (k + 1) * 5000),
      speed: m.speed,
      blobs: m.blobs,
      can: m.can,
    }),
  ),
);
const tasksArb = fc
  .array(
    fc.record({
      d: fc.double({ min: 0.5, max: 300, noNaN: true }),
      v: fc.constantFrom("a", "b", "c", "d"),
      need: needArb,
    }),
    { maxLength: 40 },
  )
  .map((ts) => ts.map((t, i) => task(`t${i}`, t.d, t.v, 20_000_000, t.need)));

describe.each(PLACEMENT_NAMES)("placement %s", (name) => {
  it("never gives a machine more tasks than its free slots, nor a task twice", () => {
    fc.assert(
      fc.property(fleetArb, tasksArb, (machines, tasks) => {
        const plan = createPlacement(name).plan(tasks, machines, NOW);
        const perMachine = new Map<string, number>();
        for (const p of plan) perMachine.set(p.machine, (perMachine.get(p.machine) ?? 0) + 1);
        for (const m of machines) expect(perMachine.get(m.name) ?? 0).toBeLessThanOrEqual(m.freeSlots);
        const ids = plan.map((p) => p.task.id);
        expect(new Set(ids).size).toBe(ids.length);
        for (const id of ids) expect(tasks.some((t) => t.id === id)).toBe(true);
      }),
    );
  });

  it("never puts a task on a machine that cannot take it (text only where it speaks, voices where it clones)", () => {
    fc.assert(
      fc.property(fleetArb, tasksArb, (machines, tasks) => {
        for (const p of createPlacement(name).plan(tasks, machines, NOW)) {
          const m = machines.find((x) => x.name === p.machine);
          expect(m && needMet(p.task.need, m.can)).toBe(true);
        }
      }),
    );
  });

  it("never puts a task on a machine it must avoid (one it failed on), even when that one is free", () => {
    const machines = [machine("failed-it"), machine("busy", { freeSlots: 0, busyUntil: [NOW + 60_000] })];
    const retried = { ...task("retried"), avoid: new Set(["failed-it"]) };
    const plan = createPlacement(name).plan([retried, task("fresh")], machines, NOW);
    expect(plan).toEqual([{ task: task("fresh"), machine: "failed-it" }]);
  });

  it("places the tasks behind ones no machine can take, and text tasks on the one machine that speaks", () => {
    const machines = [machine("lips", { maxConcurrent: 2 }), machine("speaks", { can: "tts" })];
    const tasks = [
      task("voice", 10, "v", 1_000_000, "voice_clone"),
      task("text", 10, "v", 1_000_000, "tts"),
      task("audio-1"),
      task("audio-2"),
    ];
    const plan = createPlacement(name).plan(tasks, machines, NOW);
    expect(plan.find((p) => p.task.id === "text")?.machine).toBe("speaks");
    expect(plan.some((p) => p.task.id === "voice")).toBe(false);
    expect(plan.filter((p) => p.task.id.startsWith("audio")).map((p) => p.machine)).toEqual(["lips", "lips"]);
  });

  it("fills every free slot of identical machines while tasks wait", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 20 }), (n, count) => {
        const machines = Array.from({ length: n }, (_, i) => machine(`m${i}`, { blobs: ["v"] }));
        const tasks = Array.from({ length: count }, (_, i) => task(`t${i}`));
        expect(createPlacement(name).plan(tasks, machines, NOW)).toHaveLength(Math.min(n, count));
      }),
    );
  });

  it("serves tasks in the order given (priority, then age)", () => {
    const machines = [machine("a"), machine("b")];
    const tasks = [task("first"), task("second"), task("third")];
    const plan = createPlacement(name).plan(tasks, machines, NOW);
    expect(plan.map((p) => p.task.id)).toEqual(["first", "second"]);
  });
});

describe("earliest-finish", () => {
  const policy = createPlacement("earliest-finish");

  it("puts a task on the fastest free machine", () => {
    const plan = policy.plan(
      [task("t")],
      [machine("slow", { speed: 4 }), machine("fast", { speed: 1 })],
      NOW,
    );
    expect(plan).toEqual([{ task: task("t"), machine: "fast" }]);
  });

  it("prefers a machine that already holds the video when speeds are equal", () => {
    const big = task("t", 10, "avatar", 2_000_000_000);
    const plan = policy.plan([big], [machine("cold"), machine("warm", { blobs: ["avatar"] })], NOW);
    expect(plan[0]?.machine).toBe("warm");
  });

  it("waits for a much faster busy machine rather than start on a slow free one", () => {
    const fastBusy = machine("fast", { freeSlots: 0, busyUntil: [NOW + 2000], speed: 1 });
    const slowFree = machine("slow", { speed: 10 });
    expect(policy.plan([task("t", 60)], [fastBusy, slowFree], NOW)).toEqual([]);
  });

  it("still uses the slow machine for work the fast one could not finish sooner", () => {
    const fastBusy = machine("fast", { freeSlots: 0, busyUntil: [NOW + 100_000], speed: 1 });
    const slowFree = machine("slow", { speed: 2 });
    expect(policy.plan([task("t", 10)], [fastBusy, slowFree], NOW)).toEqual([
      { task: task("t", 10), machine: "slow" },
    ]);
  });

  it("backfills: a task waiting for a busy machine does not block a later task that fits elsewhere", () => {
    const fastBusy = machine("fast", { freeSlots: 0, busyUntil: [NOW + 1000], speed: 1 });
    const slowFree = machine("slow", { speed: 3 });
    // The long task waits for "fast"; the short one finishes sooner on "slow" than after it.
    const plan = policy.plan([task("long", 100), task("short", 1)], [fastBusy, slowFree], NOW);
    expect(plan).toEqual([{ task: task("short", 1), machine: "slow" }]);
  });

  it("tells of a task it keeps for a busy machine, and when that machine's slot frees", () => {
    const fastBusy = machine("fast", { freeSlots: 0, busyUntil: [NOW + 2000], speed: 1 });
    const slowFree = machine("slow", { speed: 10 });
    const reserved: Reservation[] = [];
    const plan = policy.plan([task("t", 60)], [fastBusy, slowFree], NOW, (r) => reserved.push(r));
    expect(plan).toEqual([]);
    expect(reserved).toEqual([{ task: task("t", 60), machine: "fast", at: NOW + 2000 }]);
  });

  it("plans on past the free slots until each machine has its next task, and no further", () => {
    const free = machine("free", { speed: 1, blobs: ["v"] });
    const busy = machine("busy", { freeSlots: 0, busyUntil: [NOW + 1000], speed: 1, blobs: ["v"] });
    const tasks = [task("t0", 10), task("t1", 10), task("t2", 10), task("t3", 10)];
    const reserved: Reservation[] = [];
    const plan = policy.plan(tasks, [free, busy], NOW, (r) => reserved.push(r));
    expect(plan).toEqual([{ task: task("t0", 10), machine: "free" }]);
    // t0 holds "free" until NOW + 10 s; "busy" frees at NOW + 1 s and then runs t1 until NOW + 11 s.
    expect(reserved).toEqual([
      { task: task("t1", 10), machine: "busy", at: NOW + 1000 },
      { task: task("t2", 10), machine: "free", at: NOW + 10_000 },
    ]);
  });

  it("never both starts and keeps a task, and keeps one only where it may go", () => {
    fc.assert(
      fc.property(fleetArb, tasksArb, (machines, tasks) => {
        const reserved: Reservation[] = [];
        const plan = policy.plan(tasks, machines, NOW, (r) => reserved.push(r));
        const started = new Set(plan.map((p) => p.task.id));
        const kept = reserved.map((r) => r.task.id);
        expect(new Set(kept).size).toBe(kept.length);
        for (const r of reserved) {
          expect(started.has(r.task.id)).toBe(false);
          const m = machines.find((x) => x.name === r.machine);
          expect(m && canTake(m, r.task)).toBe(true);
          expect(r.at).toBeGreaterThan(NOW);
        }
        // Telling `reserve` changes nothing of what starts now.
        expect(plan).toEqual(policy.plan(tasks, machines, NOW));
      }),
    );
  });
});

describe("round-robin", () => {
  it("takes machines in turn across passes", () => {
    const policy = createPlacement("round-robin");
    const machines = [machine("a"), machine("b"), machine("c")];
    const first = policy.plan([task("1")], machines, NOW);
    const second = policy.plan([task("2")], machines, NOW);
    const third = policy.plan([task("3")], machines, NOW);
    expect([first, second, third].map((p) => p[0]?.machine)).toEqual(["a", "b", "c"]);
  });
});
