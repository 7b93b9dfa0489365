import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MachineEntry } from "../../src/config/machines-file.js";
import { Machine } from "../../src/gateway/machine.js";
import type { Health } from "../../src/protocol/schemas.js";
import { WorkerClient } from "../../src/protocol/worker-client.js";
import { idleHealth } from "../helpers/fake-clock-fleet.js";

function entry(over: Partial<MachineEntry> = {}): MachineEntry {
  return { name: "gpu-1", host: "10.0.0.1", port: 8000, max_concurrent: 2, enabled: true, ...over };
}

/** A Machine whose clients are never called: these tests are about its bookkeeping only. */
function machine(spec: MachineEntry = entry()): Machine {
  return new Machine(
    spec,
    (s) => new WorkerClient({ baseUrl: `http://${s.host}:${s.port}`, requestTimeoutMs: 1000 }),
  );
}

const attempt = (taskId = "t") => ({ taskId, audioDuration: 1, startedAt: 0 });

const HEALTH: Health = idleHealth(2);

describe("Machine slots", () => {
  it("runs at the agent's capacity when it reports fewer slots than machines.json, and says so", () => {
    const m = machine(entry({ max_concurrent: 3 }));
    expect(m.capacity).toBe(3);
    m.probeSucceeded({ ...HEALTH, max_concurrent: 1 }, 0);
    expect(m.capacity).toBe(1);
    expect(m.warnings).toEqual([
      "the agent runs 1 job at once but machines.json says max_concurrent 3: running at 1",
    ]);
    expect(m.tryClaim("a", attempt("a"))).toBe(true);
    expect(m.tryClaim("b", attempt("b"))).toBe(false);
    expect(m.freeSlots).toBe(0);
    // An agent with more slots than listed gets only what machines.json allows, with no warning.
    m.probeSucceeded({ ...HEALTH, max_concurrent: 8 }, 1);
    expect(m.capacity).toBe(3);
    expect(m.warnings).toEqual([]);
  });

  it("claims up to max_concurrent slots, refuses the next, and frees a slot on release", () => {
    const m = machine(entry({ max_concurrent: 2 }));
    expect(m.tryClaim("a1", attempt())).toBe(true);
    expect(m.tryClaim("a2", attempt())).toBe(true);
    expect(m.freeSlots).toBe(0);
    expect(m.tryClaim("a3", attempt())).toBe(false);
    expect([...m.running.keys()]).toEqual(["a1", "a2"]);

    expect(m.release("a1")).toBe(true);
    expect(m.release("a1")).toBe(false);
    expect(m.freeSlots).toBe(1);
    expect(m.tryClaim("a3", attempt())).toBe(true);
  });

  it("never claims the same attempt twice", () => {
    const m = machine(entry({ max_concurrent: 3 }));
    expect(m.tryClaim("a1", attempt())).toBe(true);
    expect(m.tryClaim("a1", attempt())).toBe(false);
    expect(m.running.size).toBe(1);
  });

  it("after max_concurrent is lowered, keeps what runs but claims nothing until below the new limit", () => {
    const m = machine(entry({ max_concurrent: 3 }));
    for (const id of ["a1", "a2", "a3"]) m.tryClaim(id, attempt());
    m.reconfigure(entry({ max_concurrent: 1 }));
    expect(m.running.size).toBe(3);
    expect(m.freeSlots).toBe(0);
    expect(m.tryClaim("a4", attempt())).toBe(false);
    m.release("a1");
    expect(m.tryClaim("a4", attempt())).toBe(false);
    m.release("a2");
    m.release("a3");
    expect(m.tryClaim("a4", attempt())).toBe(true);
    expect(m.tryClaim("a5", attempt())).toBe(false);
  });

  it("adopts attempts found after a restart even beyond its slots", () => {
    const m = machine(entry({ max_concurrent: 1 }));
    m.adopt("old-1", attempt());
    m.adopt("old-2", attempt());
    expect(m.running.size).toBe(2);
    expect(m.tryClaim("new", attempt())).toBe(false);
  });

  type Op =
    | { kind: "claim"; id: number }
    | { kind: "release"; id: number }
    | { kind: "adopt"; id: number }
    | { kind: "config"; maxConcurrent: number };
  const id = fc.integer({ min: 0, max: 12 });
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("claim" as const), id }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("release" as const), id }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("adopt" as const), id }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("config" as const),
        maxConcurrent: fc.integer({ min: 1, max: 5 }),
      }),
    },
  );

  it("no sequence of claims, releases and config changes lets a claim take running past max_concurrent", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(opArb, { maxLength: 60 }), (initial, ops) => {
        const m = machine(entry({ max_concurrent: initial }));
        const held = new Set<string>();
        for (const op of ops) {
          const before = m.running.size;
          const limit = m.spec.max_concurrent;
          switch (op.kind) {
            case "claim": {
              const key = `a${op.id}`;
              const ok = m.tryClaim(key, attempt());
              // A claim succeeds exactly when a slot is free and the attempt holds none yet.
              expect(ok).toBe(before < limit && !held.has(key));
              if (ok) {
                held.add(key);
                expect(m.running.size).toBeLessThanOrEqual(limit);
              }
              break;
            }
            case "release":
              expect(m.release(`a${op.id}`)).toBe(held.delete(`a${op.id}`));
              break;
            case "adopt":
              m.adopt(`a${op.id}`, attempt());
              held.add(`a${op.id}`);
              break;
            case "config":
              m.reconfigure(entry({ max_concurrent: op.maxConcurrent }));
              // Lowering the limit never ends what runs.
              expect(m.running.size).toBe(before);
              break;
          }
          expect(new Set(m.running.keys())).toEqual(held);
          expect(m.freeSlots).toBe(Math.max(0, m.spec.max_concurrent - m.running.size));
          // Only adopting can make running grow past the limit; a claim or a release never does.
          if (op.kind !== "adopt" && m.running.size > m.spec.max_concurrent) {
            expect(m.running.size).toBeLessThanOrEqual(before);
          }
        }
      }),
    );
  });

  it("with only claims, releases and config changes, running exceeds max_concurrent only after a lowering", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(
          opArb.filter((op) => op.kind !== "adopt"),
          { maxLength: 60 },
        ),
        (initial, ops) => {
          const m = machine(entry({ max_concurrent: initial }));
          // The most running may be: the limit, or what was running when the limit came down.
          let bound = initial;
          for (const op of ops) {
            if (op.kind === "claim") m.tryClaim(`a${op.id}`, attempt());
            else if (op.kind === "release") m.release(`a${op.id}`);
            else if (op.kind === "config") {
              m.reconfigure(entry({ max_concurrent: op.maxConcurrent }));
              bound = Math.max(op.maxConcurrent, m.running.size);
            }
            expect(m.running.size).toBeLessThanOrEqual(bound);
            // Over the limit, it only shrinks towards it.
            if (m.running.size <= m.spec.max_concurrent) bound = m.spec.max_concurrent;
            else bound = m.running.size;
          }
        },
      ),
    );
  });
});

describe("Machine state", () => {
  it("is unknown until probed, then follows health, drain, disable and removal in that order", () => {
    const m = machine();
    expect(m.state).toBe("unknown");
    expect(m.placeable).toBe(false);
    expect(m.setHealth("up", undefined)).toBe(true);
    expect(m.setHealth("up", undefined)).toBe(false);
    expect(m.state).toBe("up");
    expect(m.placeable).toBe(true);

    m.setDraining(true);
    expect(m.state).toBe("draining");
    m.reconfigure(entry({ enabled: false }));
    expect(m.state).toBe("disabled");
    m.reconfigure(entry());
    m.setDraining(false);
    expect(m.state).toBe("up");

    m.remove();
    expect(m.removed).toBe(true);
    expect(m.state).toBe("disabled");
    // Listed again: back in the fleet.
    m.reconfigure(entry());
    expect(m.removed).toBe(false);
    expect(m.state).toBe("up");
  });

  it("a new address is a new worker: new client, no blobs believed held, health unknown, probe due", () => {
    const m = machine();
    const client = m.client;
    m.setHealth("up", undefined);
    m.knowBlob("x");
    m.probeAgainAt(10_000);
    expect(m.reconfigure(entry({ max_concurrent: 5 }))).toBe(true);
    expect(m.client).toBe(client);
    expect(m.hasBlob("x")).toBe(true);
    expect(m.reconfigure(entry({ max_concurrent: 5 }))).toBe(false);

    expect(m.reconfigure(entry({ max_concurrent: 5, port: 9000 }))).toBe(true);
    expect(m.client).not.toBe(client);
    expect(m.client.baseUrl).toBe("http://10.0.0.1:9000");
    expect(m.hasBlob("x")).toBe(false);
    expect(m.health).toBe("unknown");
    expect(m.probeDue(0)).toBe(true);
  });

  it("is probed once at a time, when due, and while disabled only if it still runs something", () => {
    const m = machine();
    m.probeAgainAt(100);
    expect(m.probeDue(99)).toBe(false);
    expect(m.probeDue(100)).toBe(true);
    expect(m.beginProbe()).toBe(true);
    expect(m.beginProbe()).toBe(false);
    expect(m.probeDue(200)).toBe(false);
    m.endProbe();

    m.reconfigure(entry({ enabled: false }));
    expect(m.probeDue(200)).toBe(false);
    m.tryClaim("a1", attempt());
    expect(m.probeDue(200)).toBe(true);
  });

  it("counts an outage from its first failure, and declares it lost once, past the grace, while busy", () => {
    const m = machine();
    expect(m.probeFailed("refused", 1000)).toBe(1);
    expect(m.probeFailed("refused", 2000)).toBe(2);
    expect(m.unreachableSince).toBe(1000);
    expect(m.lastError).toBe("refused");
    // Nothing to hand on while idle.
    expect(m.declareLost(10_000, 5000)).toBe(false);

    m.tryClaim("a1", attempt());
    expect(m.declareLost(5999, 5000)).toBe(false);
    expect(m.declareLost(6000, 5000)).toBe(true);
    expect(m.declareLost(7000, 5000)).toBe(false);

    m.probeSucceeded(HEALTH, 8000);
    expect(m.consecutiveFailures).toBe(0);
    expect(m.unreachableSince).toBeUndefined();
    expect(m.lastSeen?.getTime()).toBe(8000);
    expect(m.info).toEqual(HEALTH);
    // A new outage may be declared lost again.
    m.probeFailed("refused", 9000);
    expect(m.declareLost(14_000, 5000)).toBe(true);
  });

  it("opens its circuit when a dispatcher cannot reach it, keeping an outage already counted", () => {
    const m = machine();
    m.openCircuit(500, 3);
    expect(m.consecutiveFailures).toBe(3);
    expect(m.unreachableSince).toBe(500);
    m.openCircuit(900, 2);
    expect(m.consecutiveFailures).toBe(3);
    expect(m.unreachableSince).toBe(500);
  });

  it("learns upload bandwidth from big uploads only", () => {
    const m = machine();
    const before = m.uploadBytesPerMs;
    m.observeUpload(1000, 1);
    expect(m.uploadBytesPerMs).toBe(before);
    m.observeUpload(10_000_000, 1000);
    expect(m.uploadBytesPerMs).toBeCloseTo(before + 0.3 * (10_000 - before));
  });

  it("sends a blob once however many attempts ask for it together", async () => {
    const m = machine();
    let uploads = 0;
    let finish: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const upload = async () => {
      uploads++;
      await gate;
    };
    const both = Promise.all([m.uploadOnce("v", upload), m.uploadOnce("v", upload)]);
    finish();
    await both;
    expect(uploads).toBe(1);
    expect(m.hasBlob("v")).toBe(true);
  });
});
