import { afterEach, beforeEach, expect, it } from "vitest";
import { AvatarStore } from "../../src/store/avatar-store.js";
import { countCallbacksByState, countTasksByStatus } from "../../src/store/ops-queries.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

/**
 * What the store is given comes back the same on both backends: PostgreSQL's own `integer` and
 * `real` would cut a 3 GB size and round a duration, and its driver reads 64-bit integers and
 * counts as strings (issue 13).
 */
describeStores("store values", (backend) => {
  let dir: string;
  let s: TestStore;

  beforeEach(async () => {
    dir = await tempDir("mh-values-");
    s = await openTestStore(dir, undefined, backend);
  });
  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  it("keeps sizes past 4 GiB and durations to the last digit, and reads them as numbers", async () => {
    const big = 5 * 1024 ** 3 + 7;
    const duration = 1234.567890123;
    const task = await s.tasks.createTask(
      newTask({
        audio: { sha256: "a".repeat(64), name: "a.wav", bytes: big, duration },
        video: { sha256: "b".repeat(64), name: "v.mp4", bytes: big + 1 },
      }),
    );
    await s.tasks.startAttempt(task.id, "att-1", "m1");
    await s.tasks.completeAttempt(task.id, "att-1", { sha256: "c".repeat(64), bytes: big + 2 }, 0.1 + 0.2);
    await s.close();
    s = await openTestStore(dir, undefined, backend);

    const row = await s.tasks.getTask(task.id);
    expect(row).toMatchObject({
      audio_bytes: big,
      audio_duration: duration,
      video_bytes: big + 1,
      result_bytes: big + 2,
      seq: task.seq,
      priority: 0,
      progress: 100,
      attempts: 1,
    });
    expect(typeof row?.seq).toBe("number");
    const [attempt] = await s.tasks.listAttempts(task.id);
    expect(attempt?.run_seconds).toBe(0.1 + 0.2);
    const [event] = await s.tasks.listEvents(task.id);
    expect(typeof event?.id).toBe("number");

    const avatar = await new AvatarStore(s.db).create({
      id: "av-1",
      owner: null,
      name: "ünïcødé 名前",
      sha256: "d".repeat(64),
      fileName: "face.mp4",
      bytes: big,
      duration: 1 / 3,
      width: 3840,
      height: 2160,
      fps: 30000 / 1001,
    });
    expect(avatar).toMatchObject({ bytes: big, duration: 1 / 3, fps: 30000 / 1001, name: "ünïcødé 名前" });
  });

  it("counts as numbers, and pages by arrival number", async () => {
    for (let i = 0; i < 5; i++) await s.tasks.createTask(newTask({ callbackUrl: "http://127.0.0.1:9/h" }));
    const byStatus = await countTasksByStatus(s.db);
    expect(byStatus).toEqual(new Map([["pending", 5]]));
    expect(await countCallbacksByState(s.db)).toEqual(new Map([["pending", 5]]));
    const page = await s.tasks.listTasks({ limit: 2, offset: 0 });
    expect(page.total).toBe(5);
    const next = await s.tasks.listTasks({ limit: 10, offset: 0, before: page.tasks[1]?.seq ?? 0 });
    expect(next.tasks.map((t) => t.seq)).toEqual(
      (await s.tasks.listTasks({ limit: 10, offset: 2 })).tasks.map((t) => t.seq),
    );
    expect(typeof (await s.tasks.lastEventId())).toBe("number");
  });
});
