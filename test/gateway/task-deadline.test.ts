import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskDeadline } from "../../src/gateway/task-deadline.js";
import { createLogger } from "../../src/logger.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { newTask, openTestStore, type TestStore } from "../helpers/store.js";
import { until } from "../helpers/until.js";

const TIMEOUT_MS = 60_000;
const CHECK_MS = 1000;

/**
 * The per-task deadline on a fake clock shared by the store and the timer: a minute-long timeout
 * is crossed with one call, and the task fails on the first check after it, not before.
 */
describe("task deadline (fake clock)", () => {
  let dir: string;
  let clock: FakeClock;
  let s: TestStore;
  let ended: Array<{ taskId: string; message: string }>;
  let deadline: TaskDeadline;

  beforeEach(async () => {
    dir = await tempDir("mh-deadline-");
    clock = new FakeClock();
    s = await openTestStore(dir, () => new Date(clock.now()));
    ended = [];
    deadline = new TaskDeadline({
      clock,
      store: s.tasks,
      // Stands in for the dispatcher: a task with an attempt is ended there, and so reported here.
      dispatcher: {
        endTask: async (taskId, message) => {
          const task = await s.tasks.getTask(taskId);
          if (task?.status !== "processing") return false;
          ended.push({ taskId, message });
          return true;
        },
      },
      timeoutMs: TIMEOUT_MS,
      checkEveryMs: CHECK_MS,
      logger: createLogger({ level: "silent", format: "json" }),
    });
  });

  afterEach(async () => {
    deadline.close();
    await s.close();
    await removeDir(dir);
  });

  it("fails a task still pending past its deadline, and ends a running one through the dispatcher", async () => {
    const waiting = await s.tasks.createTask(newTask());
    const running = await s.tasks.createTask(newTask());
    await s.tasks.startAttempt(running.id, "att-1", "gpu-1");
    deadline.start();

    // At the deadline itself nothing is overdue yet (check() waits for the pass the timer started).
    clock.advance(TIMEOUT_MS);
    await deadline.check();
    expect((await s.tasks.getTask(waiting.id))?.status).toBe("pending");
    expect(ended).toEqual([]);

    clock.advance(CHECK_MS);
    const failed = await until(async () => {
      const task = await s.tasks.getTask(waiting.id);
      return task?.status === "failed" && task;
    });
    expect(failed.error_message).toBe("timed out: not finished within 60 s of its creation (--task-timeout)");
    expect(failed.completed_at).toBe(new Date(clock.now()).toISOString());
    await until(() => ended.length === 1);
    expect(ended[0]).toMatchObject({ taskId: running.id, message: failed.error_message });
  });

  it("stops checking once closed", () => {
    deadline.start();
    expect(clock.pending).toBe(1);
    deadline.close();
    expect(clock.pending).toBe(0);
  });
});
