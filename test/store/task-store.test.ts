import { CompiledQuery, sql } from "kysely";
import { afterEach, beforeEach, expect, it } from "vitest";
import { RetentionStore } from "../../src/store/retention-store.js";
import { type EventRow, TASK_STATUSES } from "../../src/store/schema.js";
import { pendingInQueueOrder, type TaskChange, TaskStore } from "../../src/store/task-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

/** A clock the test moves by hand, so every timestamp the store writes is known. */
function steppedClock(start = Date.parse("2025-01-01T00:00:00.000Z")) {
  let now = start;
  return {
    now: () => new Date(now),
    advance: (ms: number) => {
      now += ms;
    },
    iso: () => new Date(now).toISOString(),
  };
}

const statusEvents = (events: EventRow[]) => events.filter((e) => e.to_status !== null);

describeStores("task store", (backend) => {
  let dir: string;
  let clock: ReturnType<typeof steppedClock>;
  let s: TestStore;

  beforeEach(async () => {
    dir = await tempDir("mh-store-");
    clock = steppedClock();
    s = await openTestStore(dir, clock.now, backend);
  });

  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  it("writes nothing, anywhere, while its beforeWrite check refuses (a data dir that vanished)", async () => {
    const task = await s.tasks.createTask(newTask());
    let refusing = false;
    const guarded = new TaskStore(s.db, clock.now, async () => {
      if (refusing) throw new Error("the data dir is gone");
    });
    refusing = true;
    await expect(guarded.createTask(newTask())).rejects.toThrow("the data dir is gone");
    await expect(guarded.startAttempt(task.id, "att-1", "gpu-1")).rejects.toThrow("the data dir is gone");
    await expect(guarded.recordProgress(task.id, "att-1", 50, undefined, true)).rejects.toThrow();
    expect((await s.tasks.listTasks({ limit: 10, offset: 0 })).total).toBe(1);
    expect((await s.tasks.getTask(task.id))?.status).toBe("pending");
    refusing = false;
    expect((await guarded.startAttempt(task.id, "att-1", "gpu-1"))?.status).toBe("processing");
  });

  it("creates a task pending, with a created and a queued event, and tells listeners after commit", async () => {
    const seen: TaskChange[] = [];
    s.tasks.changes.on("change", (c) => seen.push(c));
    const input = newTask({ description: "hello", priority: 3, options: { pn: 1 } });
    const task = await s.tasks.createTask(input);

    expect(task).toMatchObject({
      id: input.id,
      status: "pending",
      description: "hello",
      priority: 3,
      options: JSON.stringify({ pn: 1 }),
      audio_duration: 2.5,
      attempts: 0,
      progress: 0,
      current_attempt: null,
      machine: null,
      started_at: null,
      completed_at: null,
      created_at: clock.iso(),
      updated_at: clock.iso(),
    });
    const events = await s.tasks.listEvents(task.id);
    expect(events.map((e) => [e.type, e.from_status, e.to_status])).toEqual([
      ["created", null, null],
      ["queued", null, "pending"],
    ]);
    expect(events.every((e) => e.at === clock.iso())).toBe(true);
    expect(seen.map((c) => c.event.type)).toEqual(["created", "queued"]);
    expect(seen.every((c) => c.task.status === "pending")).toBe(true);
  });

  it("numbers tasks in arrival order", async () => {
    const a = await s.tasks.createTask(newTask());
    const b = await s.tasks.createTask(newTask());
    expect(b.seq).toBe(a.seq + 1);
  });

  it("starts an attempt: pending → processing, an attempt row, a dispatched event", async () => {
    const task = await s.tasks.createTask(newTask());
    clock.advance(1000);
    const started = await s.tasks.startAttempt(task.id, "att-1", "gpu-1");

    expect(started).toMatchObject({
      status: "processing",
      machine: "gpu-1",
      current_attempt: "att-1",
      attempts: 1,
      started_at: clock.iso(),
    });
    expect(await s.tasks.listAttempts(task.id)).toEqual([
      expect.objectContaining({ id: "att-1", machine: "gpu-1", status: "dispatching", ended_at: null }),
    ]);
    const last = (await s.tasks.listEvents(task.id)).at(-1);
    expect(last).toMatchObject({
      type: "dispatched",
      from_status: "pending",
      to_status: "processing",
      machine: "gpu-1",
      attempt_id: "att-1",
      message: "attempt 1 dispatched to machine gpu-1",
    });

    await s.tasks.markAttemptRunning("att-1");
    expect((await s.tasks.listAttempts(task.id))[0]?.status).toBe("running");
  });

  it("starts a task only once: a second start changes nothing and writes nothing", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    const eventsBefore = await s.tasks.listEvents(task.id);

    expect(await s.tasks.startAttempt(task.id, "att-2", "gpu-2")).toBeUndefined();
    expect(await s.tasks.getTask(task.id)).toMatchObject({ current_attempt: "att-1", machine: "gpu-1" });
    expect((await s.tasks.listAttempts(task.id)).map((a) => a.id)).toEqual(["att-1"]);
    expect(await s.tasks.listEvents(task.id)).toEqual(eventsBefore);
  });

  it("completes with the current attempt: processing → completed, result and run time kept", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    clock.advance(5000);
    const done = await s.tasks.completeAttempt(task.id, "att-1", { sha256: "c".repeat(64), bytes: 42 }, 3.5);

    expect(done).toMatchObject({
      status: "completed",
      progress: 100,
      result_sha256: "c".repeat(64),
      result_bytes: 42,
      completed_at: clock.iso(),
      error_message: null,
    });
    expect((await s.tasks.listAttempts(task.id))[0]).toMatchObject({
      status: "succeeded",
      run_seconds: 3.5,
      ended_at: clock.iso(),
    });
    expect((await s.tasks.listEvents(task.id)).at(-1)).toMatchObject({
      type: "completed",
      from_status: "processing",
      to_status: "completed",
      attempt_id: "att-1",
      progress: 100,
    });
  });

  it("requeues after a machine failure, then starts a second attempt that keeps the first start time", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    const firstStart = clock.iso();
    clock.advance(1000);
    const requeued = await s.tasks.failAttempt(task.id, "att-1", {
      kind: "machine",
      message: "engine crashed",
      retry: true,
    });

    expect(requeued).toMatchObject({ status: "pending", current_attempt: null, machine: null, progress: 0 });
    expect((await s.tasks.listAttempts(task.id))[0]).toMatchObject({
      status: "failed",
      error_kind: "machine",
      error_message: "engine crashed",
    });
    expect((await s.tasks.listEvents(task.id)).at(-1)).toMatchObject({
      type: "requeued",
      from_status: "processing",
      to_status: "pending",
      machine: "gpu-1",
      message: "attempt on gpu-1 failed (machine): engine crashed; queued again",
    });

    clock.advance(1000);
    const again = await s.tasks.startAttempt(task.id, "att-2", "gpu-2");
    expect(again).toMatchObject({ attempts: 2, started_at: firstStart, current_attempt: "att-2" });
  });

  it("fails for good when told not to retry: processing → failed with the kind and message", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    const failed = await s.tasks.failAttempt(task.id, "att-1", {
      kind: "input",
      message: "no face found",
      retry: false,
    });

    expect(failed).toMatchObject({
      status: "failed",
      error_kind: "input",
      error_message: "no face found",
      completed_at: clock.iso(),
    });
    expect((await s.tasks.listEvents(task.id)).at(-1)).toMatchObject({
      type: "failed",
      from_status: "processing",
      to_status: "failed",
      message: "no face found",
    });
  });

  it("fails a pending task (its deadline passed), but not one that runs", async () => {
    const waiting = await s.tasks.createTask(newTask());
    const failed = await s.tasks.failPendingTask(waiting.id, "timed out");
    expect(failed).toMatchObject({ status: "failed", error_kind: "machine", error_message: "timed out" });
    expect((await s.tasks.listEvents(waiting.id)).at(-1)).toMatchObject({
      type: "failed",
      from_status: "pending",
      to_status: "failed",
      attempt_id: null,
    });

    const running = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(running.id, "att-1", "gpu-1");
    expect(await s.tasks.failPendingTask(running.id, "timed out")).toBeUndefined();
    expect((await s.tasks.getTask(running.id))?.status).toBe("processing");
  });

  it("fences: a stale attempt can neither complete, fail nor move the progress of its task", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    await s.tasks.failAttempt(task.id, "att-1", { kind: "machine", message: "unreachable", retry: true });
    await s.tasks.startAttempt(task.id, "att-2", "gpu-2");
    const before = await s.tasks.listEvents(task.id);

    const result = { sha256: "d".repeat(64), bytes: 1 };
    expect(await s.tasks.completeAttempt(task.id, "att-1", result)).toBeUndefined();
    expect(
      await s.tasks.failAttempt(task.id, "att-1", { kind: "input", message: "late", retry: false }),
    ).toBeUndefined();
    await s.tasks.recordProgress(task.id, "att-1", 50, "late progress", true);
    await s.tasks.recordProgress(task.id, "att-1", 60, undefined, false);

    expect(await s.tasks.getTask(task.id)).toMatchObject({
      status: "processing",
      current_attempt: "att-2",
      machine: "gpu-2",
      progress: 0,
      result_sha256: null,
    });
    expect(await s.tasks.listEvents(task.id)).toEqual(before);
    // The stale attempt's row keeps the failure it ended with.
    expect((await s.tasks.listAttempts(task.id))[0]).toMatchObject({ id: "att-1", status: "failed" });
  });

  it("lets exactly one of two racing outcomes of the same attempt through", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    const [completed, failed] = await Promise.all([
      s.tasks.completeAttempt(task.id, "att-1", { sha256: "e".repeat(64), bytes: 1 }),
      s.tasks.failAttempt(task.id, "att-1", { kind: "machine", message: "lost", retry: true }),
    ]);
    expect([completed, failed].filter((r) => r !== undefined)).toHaveLength(1);
    const events = statusEvents(await s.tasks.listEvents(task.id));
    expect(events.map((e) => e.type)).toEqual(["queued", "dispatched", completed ? "completed" : "requeued"]);
  });

  it("records progress: a step writes an event row, a small move only the task's progress", async () => {
    const task = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    await s.tasks.recordProgress(task.id, "att-1", 3, undefined, false);
    expect((await s.tasks.getTask(task.id))?.progress).toBe(3);
    const quiet = await s.tasks.listEvents(task.id);
    expect(quiet.some((e) => e.type === "progress")).toBe(false);

    await s.tasks.recordProgress(task.id, "att-1", 40, "rendering", true);
    expect((await s.tasks.getTask(task.id))?.progress).toBe(40);
    expect((await s.tasks.listEvents(task.id)).at(-1)).toMatchObject({
      type: "progress",
      from_status: null,
      to_status: null,
      progress: 40,
      message: "rendering",
    });
    // The same progress again is not a step.
    await s.tasks.recordProgress(task.id, "att-1", 40, "rendering", true);
    expect((await s.tasks.listEvents(task.id)).filter((e) => e.type === "progress")).toHaveLength(1);
  });

  it("writes one callback delivery per status change of a task with a callback_url, none without", async () => {
    const withUrl = await s.tasks.createTask(newTask({ callbackUrl: "http://127.0.0.1:9/hook" }));
    const without = await s.tasks.createTask(newTask());
    for (const task of [withUrl, without]) {
      await s.tasks.startAttempt(task.id, `${task.id}-a1`, "gpu-1");
      await s.tasks.recordProgress(task.id, `${task.id}-a1`, 50, "half", true);
      await s.tasks.completeAttempt(task.id, `${task.id}-a1`, { sha256: "f".repeat(64), bytes: 9 });
    }

    const rows = await s.db.selectFrom("callbacks").selectAll().orderBy("id").execute();
    expect(rows.every((r) => r.task_id === withUrl.id)).toBe(true);
    const events = statusEvents(await s.tasks.listEvents(withUrl.id));
    expect(rows.map((r) => r.event_id)).toEqual(events.map((e) => e.id));
    expect(rows.every((r) => r.state === "pending" && r.tries === 0 && r.url === withUrl.callback_url)).toBe(
      true,
    );
    const payloads = rows.map((r) => JSON.parse(r.payload) as Record<string, unknown>);
    expect(payloads.map((p) => [p.event, p.status])).toEqual([
      ["queued", "pending"],
      ["dispatched", "processing"],
      ["completed", "completed"],
    ]);
    expect(payloads[2]).toMatchObject({ task_id: withUrl.id, machine: "gpu-1", progress: 100 });

    // The sender sees one row per task at a time, the oldest first.
    const due = await s.callbacks.dueCallbacks(10);
    expect(due.map((r) => r.id)).toEqual([rows[0]?.id]);
  });

  it("after a restart, reads back what was under way: live attempts, the queue in order, overdue tasks", async () => {
    const running = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(running.id, "att-run", "gpu-1");
    await s.tasks.markAttemptRunning("att-run");
    // Attempts come back in the order they started.
    clock.advance(10);
    const dispatching = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(dispatching.id, "att-disp", "gpu-2");
    const finished = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(finished.id, "att-done", "gpu-1");
    await s.tasks.completeAttempt(finished.id, "att-done", { sha256: "0".repeat(64), bytes: 1 });
    clock.advance(1000);
    const low = await s.tasks.createTask(newTask({ priority: 0 }));
    clock.advance(1000);
    const high = await s.tasks.createTask(newTask({ priority: 5 }));
    const low2 = await s.tasks.createTask(newTask({ priority: 0 }));
    await s.close();

    s = await openTestStore(dir, clock.now, backend);
    expect((await s.tasks.liveAttempts()).map((a) => [a.id, a.status])).toEqual([
      ["att-run", "running"],
      ["att-disp", "dispatching"],
    ]);
    expect((await s.tasks.pendingTasks(10)).map((t) => t.id)).toEqual([high.id, low.id, low2.id]);
    expect((await s.tasks.pendingTasks(1)).map((t) => t.id)).toEqual([high.id]);
    const overdue = await s.tasks.unfinishedCreatedBefore(
      new Date(clock.now().getTime() - 1500).toISOString(),
      10,
    );
    expect(overdue.map((t) => t.id)).toEqual([running.id, dispatching.id]);
    expect(await s.tasks.getTask(finished.id)).toMatchObject({ status: "completed", result_bytes: 1 });
    const { tasks, total } = await s.tasks.listTasks({ status: "pending", limit: 2, offset: 0 });
    expect(total).toBe(3);
    expect(tasks.map((t) => t.id)).toEqual([low2.id, high.id]);
  });

  /** Every total GET /tasks can ask for, as kept, and as counted from the tasks themselves. */
  async function totals(): Promise<{ kept: Record<string, number>; counted: Record<string, number> }> {
    const kept: Record<string, number> = {};
    const counted: Record<string, number> = {};
    for (const owner of [undefined, "alice", "bob"]) {
      for (const status of [undefined, ...TASK_STATUSES]) {
        const key = `${owner ?? "*"}/${status ?? "*"}`;
        kept[key] = (
          await s.tasks.listTasks({
            limit: 1,
            offset: 0,
            ...(owner ? { owner } : {}),
            ...(status ? { status } : {}),
          })
        ).total;
        let query = s.db.selectFrom("tasks").select((eb) => eb.fn.countAll<number>().as("n"));
        if (owner) query = query.where("owner", "=", owner);
        if (status) query = query.where("status", "=", status);
        counted[key] = Number((await query.executeTakeFirstOrThrow()).n);
      }
    }
    return { kept, counted };
  }

  it("keeps GET /tasks's totals with the tasks through every change, a bulk cancel and retention", async () => {
    const make = (owner?: string) => s.tasks.createTask(newTask(owner ? { owner } : {}));
    const done = await make("alice");
    await s.tasks.startAttempt(done.id, "att-done", "gpu-1");
    await s.tasks.completeAttempt(done.id, "att-done", { sha256: "c".repeat(64), bytes: 1 });
    const requeued = await make("bob");
    await s.tasks.startAttempt(requeued.id, "att-r", "gpu-1");
    await s.tasks.failAttempt(requeued.id, "att-r", { kind: "machine", message: "x", retry: true });
    const failed = await make();
    await s.tasks.startAttempt(failed.id, "att-f", "gpu-1");
    await s.tasks.failAttempt(failed.id, "att-f", { kind: "input", message: "x", retry: false });
    await s.tasks.retryTask(failed.id, "failed");
    const running = await make("alice");
    await s.tasks.startAttempt(running.id, "att-run", "gpu-2");
    for (let i = 0; i < 5; i++) await make(i % 2 === 0 ? "alice" : undefined);
    expect(await s.tasks.cancelPendingBatch(3, "emptied")).toBe(3);
    const overdue = await make("bob");
    await s.tasks.failPendingTask(overdue.id, "timed out");
    let { kept, counted } = await totals();
    expect(kept).toEqual(counted);
    expect(kept["*/*"]).toBe(10);
    expect(kept["alice/completed"]).toBe(1);

    const finished = (
      await s.db.selectFrom("tasks").select("id").where("status", "in", ["completed", "cancelled"]).execute()
    ).map((t) => t.id);
    expect(await new RetentionStore(s.db, s.tasks).deleteFinished(finished)).toMatchObject({
      tasks: expect.arrayContaining(finished),
    });
    ({ kept, counted } = await totals());
    expect(kept).toEqual(counted);
    expect(kept["*/*"]).toBe(10 - finished.length);
  });

  it("starts the totals from the tasks a store already holds when it is migrated", async () => {
    await s.tasks.createTask(newTask({ owner: "alice" }));
    const task = await s.tasks.createTask(newTask());
    await s.tasks.cancelTask(task.id, "pending", "no");
    await s.tasks.createTask(newTask());
    const before = await totals();
    // The store as it was before migration 0016: tasks, and no totals.
    await s.db.schema.dropTable("task_totals").execute();
    await sql`delete from kysely_migration where name = '0016_task_totals'`.execute(s.db);
    await s.close();
    s = await openTestStore(dir, clock.now, backend);
    expect(await totals()).toEqual(before);
    expect(before.kept["*/pending"]).toBe(2);
  });

  // SQLite's planner has no statistics to go by (the store never runs ANALYZE), so what it picks
  // is decided by the indexes alone; PostgreSQL's plans for a few rows say nothing of many.
  it.skipIf(backend.name !== "sqlite")(
    "takes the queue's head from its index in queue order, without sorting the whole queue",
    async () => {
      for (const upTo of ["lipsync", "tts", "voice_clone"] as const) {
        const query = pendingInQueueOrder(s.db, 4, upTo).compile();
        const { rows } = await s.db.executeQuery<{ detail: string }>(
          CompiledQuery.raw(`explain query plan ${query.sql}`, [...query.parameters]),
        );
        const plan = rows.map((r) => r.detail).join("; ");
        expect(plan).toContain("tasks_queue");
        // A temp B-tree is a sort of every pending task of the top priority (issue 14).
        expect(plan).not.toContain("TEMP B-TREE");
      }
    },
  );

  it("never serves a cached row older than the last committed write", async () => {
    const task = await s.tasks.createTask(newTask());
    expect((await s.tasks.getTask(task.id))?.status).toBe("pending");
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    expect((await s.tasks.getTask(task.id))?.status).toBe("processing");
    await s.tasks.recordProgress(task.id, "att-1", 7, undefined, false);
    expect((await s.tasks.getTask(task.id))?.progress).toBe(7);
  });

  it("notes waiting on the pending tasks only, and replays events after an id, one owner's or all", async () => {
    const mine = await s.tasks.createTask(newTask({ owner: "alice" }));
    const theirs = await s.tasks.createTask(newTask({ owner: "bob" }));
    const running = await s.tasks.createTask(newTask({ owner: "alice" }));
    await s.tasks.startAttempt(running.id, "att-1", "gpu-1");
    const before = await s.tasks.lastEventId();

    clock.advance(1000);
    expect(
      await s.tasks.noteWaiting([mine.id, theirs.id, running.id, "no-such-task"], "0 of 2 machines up"),
    ).toBe(2);

    const after = await s.tasks.eventsAfter(before, { limit: 10 });
    expect(after.map(({ event }) => [event.task_id, event.type, event.message, event.at])).toEqual([
      [mine.id, "waiting", "0 of 2 machines up", clock.iso()],
      [theirs.id, "waiting", "0 of 2 machines up", clock.iso()],
    ]);
    expect(after.every(({ event }) => event.progress === null && event.to_status === null)).toBe(true);
    const alices = await s.tasks.eventsAfter(0, { owner: "alice", limit: 100 });
    expect(new Set(alices.map(({ task }) => task.id))).toEqual(new Set([mine.id, running.id]));
    expect(await s.tasks.lastEventId(mine.id)).toBe(after[0]?.event.id);
    expect(await s.tasks.lastEventId()).toBe(after[1]?.event.id);
  });
});
