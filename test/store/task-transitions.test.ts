import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { AttemptStatus, TaskStatus } from "../../src/store/schema.js";
import { allowedTransition, TASK_TRANSITIONS } from "../../src/store/task-transitions.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

const TASKS = 3;

/** What the dispatcher, the deadline and a restart can do to the store, with a task picked by index. */
type Op =
  | { kind: "start"; task: number }
  | { kind: "running"; task: number; stale: boolean }
  | { kind: "complete"; task: number; stale: boolean }
  | { kind: "fail"; task: number; stale: boolean; retry: boolean; input: boolean }
  | { kind: "failPending"; task: number }
  | { kind: "cancel"; task: number; from: "pending" | "processing" }
  | { kind: "retry"; task: number; from: "failed" | "cancelled" }
  | { kind: "cancelPending"; limit: number }
  | { kind: "progress"; task: number; stale: boolean; value: number; step: boolean }
  | { kind: "restart" };

const task = fc.integer({ min: 0, max: TASKS - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("start" as const), task }),
  fc.record({ kind: fc.constant("running" as const), task, stale: fc.boolean() }),
  fc.record({ kind: fc.constant("complete" as const), task, stale: fc.boolean() }),
  fc.record({
    kind: fc.constant("fail" as const),
    task,
    stale: fc.boolean(),
    retry: fc.boolean(),
    input: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("failPending" as const), task }),
  fc.record({
    kind: fc.constant("cancel" as const),
    task,
    from: fc.constantFrom("pending" as const, "processing" as const),
  }),
  fc.record({
    kind: fc.constant("retry" as const),
    task,
    from: fc.constantFrom("failed" as const, "cancelled" as const),
  }),
  fc.record({ kind: fc.constant("cancelPending" as const), limit: fc.integer({ min: 1, max: 2 }) }),
  fc.record({
    kind: fc.constant("progress" as const),
    task,
    stale: fc.boolean(),
    value: fc.integer({ min: 0, max: 100 }),
    step: fc.boolean(),
  }),
  fc.constant({ kind: "restart" as const }),
);

/** The tiny model the store must agree with. */
interface ModelTask {
  readonly id: string;
  readonly callback: boolean;
  status: TaskStatus;
  current: string | null;
  progress: number;
  /** The attempts counter: attempts since creation or the last retry. */
  tries: number;
  /** Every attempt ever started, in order, with its status. */
  readonly attempts: Array<{ id: string; status: AttemptStatus }>;
  statusChanges: number;
  progressSteps: number;
  /**
   * The current attempt has logged a progress step. Every step here says "working", and the same
   * progress is a step again only with a new message (issue 12): the first one of an attempt is.
   */
  stepped: boolean;
}

/** The attempt an operation speaks for: the current one, or one the task has moved past. */
function attemptFor(t: ModelTask, stale: boolean): string {
  if (!stale) return t.current ?? `${t.id}-none`;
  const old = t.attempts.filter((a) => a.id !== t.current).at(-1);
  return old?.id ?? `${t.id}-never`;
}

type TaskOp = Exclude<Op, { kind: "restart" } | { kind: "cancelPending" }>;

/** Applies `op` to the model; returns whether the task's status changes. */
function step(model: ModelTask[], op: TaskOp): boolean {
  const t = model[op.task];
  if (!t) throw new Error("no such task");
  const current = t.attempts.find((a) => a.id === t.current);
  switch (op.kind) {
    case "start": {
      if (t.status !== "pending") return false;
      const id = `${t.id}-a${t.attempts.length + 1}`;
      t.attempts.push({ id, status: "dispatching" });
      Object.assign(t, {
        status: "processing",
        current: id,
        progress: 0,
        tries: t.tries + 1,
        stepped: false,
      });
      t.statusChanges++;
      return true;
    }
    case "running": {
      const a = t.attempts.find((x) => x.id === attemptFor(t, op.stale));
      if (a?.status === "dispatching") a.status = "running";
      return false;
    }
    case "complete": {
      if (t.status !== "processing" || attemptFor(t, op.stale) !== t.current || !current) return false;
      current.status = "succeeded";
      Object.assign(t, { status: "completed", progress: 100 });
      t.statusChanges++;
      return true;
    }
    case "fail": {
      if (t.status !== "processing" || attemptFor(t, op.stale) !== t.current || !current) return false;
      current.status = "failed";
      if (op.retry) Object.assign(t, { status: "pending", current: null, progress: 0 });
      else t.status = "failed";
      t.statusChanges++;
      return true;
    }
    case "failPending": {
      if (t.status !== "pending") return false;
      t.status = "failed";
      t.statusChanges++;
      return true;
    }
    case "cancel": {
      if (t.status !== op.from) return false;
      if (current) current.status = "cancelled";
      t.status = "cancelled";
      t.statusChanges++;
      return true;
    }
    case "retry": {
      if (t.status !== op.from) return false;
      Object.assign(t, { status: "pending", current: null, progress: 0, tries: 0 });
      t.statusChanges++;
      return true;
    }
    case "progress": {
      if (t.status !== "processing" || attemptFor(t, op.stale) !== t.current) return false;
      if (op.step && op.value === t.progress && t.stepped) return false;
      if (op.step) {
        t.progressSteps++;
        t.stepped = true;
      }
      t.progress = op.value;
      return false;
    }
  }
}

async function apply(s: TestStore, t: ModelTask, op: TaskOp) {
  switch (op.kind) {
    case "start":
      return s.tasks.startAttempt(t.id, `${t.id}-a${t.attempts.length + 1}`, `gpu-${t.attempts.length % 2}`);
    case "running":
      await s.tasks.markAttemptRunning(attemptFor(t, op.stale));
      return undefined;
    case "complete":
      return s.tasks.completeAttempt(t.id, attemptFor(t, op.stale), { sha256: "c".repeat(64), bytes: 7 });
    case "fail":
      return s.tasks.failAttempt(t.id, attemptFor(t, op.stale), {
        kind: op.input ? "input" : "machine",
        message: "it broke",
        retry: op.retry,
      });
    case "failPending":
      return s.tasks.failPendingTask(t.id, "timed out");
    case "cancel":
      return s.tasks.cancelTask(t.id, op.from, "cancelled by a client");
    case "retry":
      return s.tasks.retryTask(t.id, op.from);
    case "progress":
      await s.tasks.recordProgress(t.id, attemptFor(t, op.stale), op.value, "working", op.step);
      return undefined;
  }
}

/** Everything the store holds about the tasks agrees with the model. */
async function check(s: TestStore, model: ModelTask[]): Promise<void> {
  const live = new Set<string>();
  for (const t of model) {
    const row = await s.tasks.getTask(t.id);
    expect(row?.status).toBe(t.status);
    expect(row?.progress).toBe(t.progress);
    expect(row?.attempts).toBe(t.tries);
    if (t.status === "processing" || t.status === "pending") expect(row?.current_attempt).toBe(t.current);

    const events = await s.tasks.listEvents(t.id);
    const changes = events.filter((e) => e.to_status !== null);
    // One event row per state change (plus `created`, and one per progress step).
    expect(changes).toHaveLength(t.statusChanges + 1);
    expect(events).toHaveLength(1 + t.statusChanges + 1 + t.progressSteps);
    // The events chain up, and each link is a move the table allows, under its own name.
    let from: string | null = null;
    for (const e of changes) {
      expect(e.from_status).toBe(from);
      const to = e.to_status as TaskStatus;
      expect(allowedTransition(e.from_status as TaskStatus | null, to).event).toBe(e.type);
      from = to;
    }
    expect(from).toBe(t.status);

    const callbacks = await s.db.selectFrom("callbacks").selectAll().where("task_id", "=", t.id).execute();
    expect(callbacks.map((c) => c.event_id)).toEqual(t.callback ? changes.map((e) => e.id) : []);

    const attempts = await s.tasks.listAttempts(t.id);
    expect(attempts.map((a) => [a.id, a.status])).toEqual(t.attempts.map((a) => [a.id, a.status]));
    for (const a of t.attempts) if (a.status === "dispatching" || a.status === "running") live.add(a.id);
  }
  // What a restarted gateway would re-attach to: exactly the attempts still under way.
  expect(new Set((await s.tasks.liveAttempts()).map((a) => a.id))).toEqual(live);
}

describe("task status transitions", () => {
  it("the table names every move once, and refuses any other", () => {
    const pairs = TASK_TRANSITIONS.map((t) => `${t.from}→${t.to}`);
    expect(new Set(pairs).size).toBe(pairs.length);
    expect(() => allowedTransition("completed", "pending")).toThrow(/not an allowed transition/);
    expect(() => allowedTransition("failed", "processing")).toThrow(/not an allowed transition/);
    expect(() => allowedTransition(null, "processing")).toThrow(/not an allowed transition/);
  });
});

describeStores("task status transitions (model-based)", (backend) => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await removeDir(dir);
  });

  it("any sequence of store operations keeps the store equal to the model, one event row per change", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        const dir = await tempDir("mh-store-prop-");
        dirs.push(dir);
        let s = await openTestStore(dir, undefined, backend);
        try {
          const model: ModelTask[] = [];
          for (let i = 0; i < TASKS; i++) {
            const input = newTask(i % 2 === 1 ? { callbackUrl: "http://127.0.0.1:9/hook" } : {});
            await s.tasks.createTask(input);
            model.push({
              id: input.id,
              callback: input.callbackUrl !== null,
              status: "pending",
              current: null,
              progress: 0,
              attempts: [],
              tries: 0,
              statusChanges: 0,
              progressSteps: 0,
              stepped: false,
            });
          }
          for (const op of ops) {
            if (op.kind === "restart") {
              await s.close();
              s = await openTestStore(dir, undefined, backend);
            } else if (op.kind === "cancelPending") {
              // The queue's order: these tasks share a priority, so creation order.
              const cancelled = model.filter((t) => t.status === "pending").slice(0, op.limit);
              const n = await s.tasks.cancelPendingBatch(op.limit, "queue emptied");
              expect(n).toBe(cancelled.length);
              for (const t of cancelled)
                step(model, { kind: "cancel", task: model.indexOf(t), from: "pending" });
            } else {
              const t = model[op.task];
              if (!t) throw new Error("no such task");
              // The store is called with the attempt ids the model names before the model moves.
              const returned = await apply(s, t, op);
              const changed = step(model, op);
              if (op.kind !== "running" && op.kind !== "progress") {
                expect(returned !== undefined).toBe(changed);
                if (returned) expect(returned.status).toBe(t.status);
              }
            }
            await check(s, model);
          }
        } finally {
          await s.close();
        }
      }),
      { numRuns: 100 },
    );
  });
});
