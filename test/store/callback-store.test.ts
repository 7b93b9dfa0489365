import { afterEach, beforeEach, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

/** The callback deliveries on a real SQLite file, as the sender and GET /tasks/{id}/callbacks use them. */
describeStores("callback store", (backend) => {
  let dir: string;
  let now: number;
  let s: TestStore;

  beforeEach(async () => {
    dir = await tempDir("mh-callbacks-");
    now = Date.parse("2025-01-01T00:00:00.000Z");
    s = await openTestStore(dir, () => new Date(now), backend);
  });
  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  /** A task with a callback_url and two status changes: two deliveries, due now. */
  async function taskWithTwoDeliveries() {
    const task = await s.tasks.createTask(newTask({ callbackUrl: "http://127.0.0.1:9/hook" }));
    await s.tasks.startAttempt(task.id, `${task.id}-a1`, "gpu-1");
    const rows = await s.db
      .selectFrom("callbacks")
      .selectAll()
      .where("task_id", "=", task.id)
      .orderBy("id")
      .execute();
    return { task, rows };
  }

  it("gives every delivery its own webhook id", async () => {
    const { rows } = await taskWithTwoDeliveries();
    const ids = rows.map((r) => r.webhook_id);
    expect(ids.every((id) => /^msg_[0-9a-f]{32}$/.test(id ?? ""))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("counts only a task's first pending delivery toward the next wake-up", async () => {
    const { rows } = await taskWithTwoDeliveries();
    const [first] = rows;
    if (!first) throw new Error("no delivery");
    const retryAt = new Date(now + 300_000);
    await s.callbacks.settleCallback(
      first,
      { state: "pending", tries: 1, nextAt: retryAt, error: "receiver answered HTTP 503" },
      { at: new Date(now), durationMs: 12, httpStatus: 503, error: "receiver answered HTTP 503" },
    );
    // The second delivery is old enough, but waits for the first: waking now would find nothing.
    expect(await s.callbacks.dueCallbacks(10)).toEqual([]);
    expect(await s.callbacks.nextCallbackDue()).toBe(retryAt.toISOString());
  });

  it("leaves out the tasks whose try is under way", async () => {
    const a = await taskWithTwoDeliveries();
    const b = await taskWithTwoDeliveries();
    expect((await s.callbacks.dueCallbacks(10)).map((r) => r.task_id)).toEqual([a.task.id, b.task.id]);
    expect((await s.callbacks.dueCallbacks(10, [a.task.id])).map((r) => r.task_id)).toEqual([b.task.id]);
    expect(await s.callbacks.nextCallbackDue([a.task.id, b.task.id])).toBeUndefined();
  });

  it("keeps every try, and a redelivery comes after the task's other deliveries with a new id", async () => {
    const { task, rows } = await taskWithTwoDeliveries();
    const [first] = rows;
    if (!first) throw new Error("no delivery");
    await s.callbacks.settleCallback(
      first,
      { state: "pending", tries: 1, nextAt: new Date(now), error: "connect ECONNREFUSED 127.0.0.1:9" },
      { at: new Date(now), durationMs: 3, httpStatus: null, error: "connect ECONNREFUSED 127.0.0.1:9" },
    );
    await s.callbacks.settleCallback(
      { ...first, tries: 1 },
      { state: "delivered", tries: 2 },
      { at: new Date(now + 5000), durationMs: 8, httpStatus: 200, error: null },
    );
    const again = await s.callbacks.addDelivery({
      taskId: task.id,
      eventId: first.event_id,
      url: first.url,
      payload: first.payload,
    });
    const listed = await s.callbacks.listDeliveries(task.id);
    expect(listed.map((d) => [d.id, d.state, d.tryRows.map((t) => t.http_status)])).toEqual([
      [first.id, "delivered", [null, 200]],
      [rows[1]?.id, "pending", []],
      [again.id, "pending", []],
    ]);
    expect(again.webhook_id).not.toBe(first.webhook_id);
    expect((await s.callbacks.dueCallbacks(10)).map((r) => r.id)).toEqual([rows[1]?.id]);
  });
});
