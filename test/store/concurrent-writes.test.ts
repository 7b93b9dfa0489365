import { sql } from "kysely";
import { afterEach, beforeEach, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import { AvatarStore } from "../../src/store/avatar-store.js";
import { inEventOrder } from "../../src/store/dialect.js";
import { RetentionStore } from "../../src/store/retention-store.js";
import { TaskStore } from "../../src/store/task-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";
import { until } from "../helpers/until.js";

/**
 * Writes that race. On PostgreSQL the store's pool runs transactions side by side, so each of
 * these would go wrong without the row locks and identities of issue 13 (two tasks drawing one
 * `seq`, a task completed and cancelled at once, a task created from an avatar being deleted);
 * SQLite runs one transaction at a time and must give the same answers.
 */
describeStores("concurrent writes", (backend) => {
  let dir: string;
  let s: TestStore;

  beforeEach(async () => {
    dir = await tempDir("mh-race-");
    s = await openTestStore(dir, undefined, backend);
  });
  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  it("tasks created at once each get their own arrival number, and the queue holds them all", async () => {
    const inputs = Array.from({ length: 40 }, () => newTask());
    const created = await Promise.all(inputs.map((input) => s.tasks.createTask(input)));
    const seqs = created.map((t) => t.seq);
    expect(new Set(seqs).size).toBe(inputs.length);
    expect(seqs.every((n) => Number.isInteger(n) && n > 0)).toBe(true);
    const queue = await s.tasks.pendingTasks(100);
    expect(queue.map((t) => t.seq)).toEqual([...seqs].sort((a, b) => a - b));
    expect(await s.tasks.countPending()).toBe(inputs.length);
  });

  it("of a result, a failure and a cancel arriving together for one attempt, exactly one counts", async () => {
    for (let round = 0; round < 10; round++) {
      const task = await s.tasks.createTask(newTask());
      const attempt = `${task.id}-a1`;
      await s.tasks.startAttempt(task.id, attempt, "m1");
      const outcomes = await Promise.all([
        s.tasks.completeAttempt(task.id, attempt, { sha256: "c".repeat(64), bytes: 10 }),
        s.tasks.failAttempt(task.id, attempt, { kind: "machine", message: "lost", retry: false }),
        s.tasks.cancelTask(task.id, "processing", "cancelled by the client"),
        s.tasks.completeAttempt(task.id, attempt, { sha256: "d".repeat(64), bytes: 20 }),
      ]);
      const won = outcomes.filter((t) => t !== undefined);
      expect(won).toHaveLength(1);
      const events = await s.tasks.listEvents(task.id);
      const finals = events.filter((e) => e.from_status === "processing");
      expect(finals.map((e) => e.to_status)).toEqual([won[0]?.status]);
      expect((await s.tasks.getTask(task.id))?.status).toBe(won[0]?.status);
    }
  });

  it("a queue emptied while the dispatcher starts its tasks: each task either runs or is cancelled", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await s.tasks.createTask(newTask())).id);
    const [started, cancelled] = await Promise.all([
      Promise.all(ids.map((id, i) => s.tasks.startAttempt(id, `${id}-a1`, `m${i % 3}`))),
      (async () => {
        let n = 0;
        for (let batch = 7; batch === 7; n += batch) batch = await s.tasks.cancelPendingBatch(7, "emptied");
        return n;
      })(),
    ]);
    const ran = started.filter((t) => t !== undefined).length;
    expect(ran + cancelled).toBe(ids.length);
    for (const id of ids) {
      const moves = (await s.tasks.listEvents(id)).filter((e) => e.from_status === "pending");
      expect(moves).toHaveLength(1);
      expect((await s.tasks.getTask(id))?.status).toBe(moves[0]?.to_status);
    }
    expect(await s.tasks.countPending()).toBe(0);
  });

  it("a batch of the queue whose first task is started under it still cancels a full batch", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await s.tasks.createTask(newTask())).id);
    // Another transaction holds the first task and moves it out of the queue, as a start does.
    let finish = () => {};
    const holding = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let locked = () => {};
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holder = s.db.transaction().execute(async (trx) => {
      await trx
        .selectFrom("tasks")
        .select("id")
        .where("id", "=", ids[0] ?? "")
        .forUpdate()
        .execute();
      await trx
        .updateTable("tasks")
        .set({ status: "processing" })
        .where("id", "=", ids[0] ?? "")
        .execute();
      locked();
      await holding;
    });
    await isLocked;
    const batch = s.tasks.cancelPendingBatch(3, "emptied");
    if (backend.name === "postgres") {
      // The batch has read the first task and waits for its lock.
      await until(async () => {
        const { rows } = await sql<{
          n: number;
        }>`select count(*) as n from pg_locks where not granted`.execute(s.db);
        return Number(rows[0]?.n) > 0;
      }, 10_000);
    }
    finish();
    await holder;
    // Three cancelled, so a caller that stops at a short batch stops at the right time: one left.
    expect(await batch).toBe(3);
    expect(await s.tasks.countPending()).toBe(1);
  });

  it("an avatar deleted while a task is created from it: the task is refused, or the delete is", async () => {
    const avatars = new AvatarStore(s.db);
    for (let round = 0; round < 10; round++) {
      const id = `avatar-${round}`;
      await avatars.create({
        id,
        owner: null,
        name: null,
        sha256: "e".repeat(64),
        fileName: "face.mp4",
        bytes: 100,
        duration: 2,
        width: 64,
        height: 64,
        fps: 25,
      });
      const [created, deletion] = await Promise.all([
        s.tasks.createTask(newTask({ avatarId: id })).catch((err: unknown) => err),
        avatars.delete(id),
      ]);
      if (created instanceof InputError) {
        expect(created.code).toBe("UNKNOWN_AVATAR");
        expect(deletion.outcome).toBe("deleted");
      } else {
        expect(created).toMatchObject({ avatar_id: id, status: "pending" });
        expect(deletion).toEqual({ outcome: "in_use", liveTasks: 1 });
        expect(await avatars.get(id)).toBeDefined();
        await s.tasks.cancelPendingBatch(100, "next round");
      }
    }
  });

  it("a retry racing retention: a task queued again keeps its files, or the retry is refused", async () => {
    let clock = Date.parse("2025-01-01T00:00:00.000Z");
    const now = () => new Date(clock);
    const tasks = new TaskStore(s.db, now);
    const retention = new RetentionStore(s.db, tasks, now);
    for (let round = 0; round < 10; round++) {
      const task = await tasks.createTask(newTask());
      await tasks.startAttempt(task.id, `${task.id}-a1`, "m1");
      await tasks.failAttempt(task.id, `${task.id}-a1`, { kind: "input", message: "no face", retry: false });
      clock += 60_000;
      const cutoff = new Date(clock).toISOString();
      const [retried] = await Promise.all([
        tasks.retryTask(task.id, "failed"),
        retention.expireFiles(cutoff, 100),
        retention.deleteFinished([task.id]),
      ]);
      const row = await s.db.selectFrom("tasks").selectAll().where("id", "=", task.id).executeTakeFirst();
      if (retried) {
        // Queued again: it must still be there, with its files.
        expect(row).toMatchObject({ status: "pending", files_deleted_at: null });
      } else {
        expect(row?.status ?? "deleted").not.toBe("pending");
      }
      await tasks.cancelPendingBatch(100, "next round");
    }
  });

  it("events become visible in the order of their ids: a reader that follows the highest id misses none", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await s.tasks.createTask(newTask())).id);
    const start = await s.tasks.lastEventId();
    const emitted: number[] = [];
    s.tasks.changes.on("change", (c) => emitted.push(c.event.id));
    // What an SSE client reconnecting with Last-Event-ID does, as fast as it can.
    const seen = new Set<number>();
    let after = start;
    let writing = true;
    const follow = async () => {
      for (const { event } of await s.tasks.eventsAfter(after, { limit: 10_000 })) {
        seen.add(event.id);
        after = Math.max(after, event.id);
      }
    };
    const reader = (async () => {
      while (writing) await follow();
    })();
    await Promise.all(
      ids.map(async (id, i) => {
        await s.tasks.startAttempt(id, `${id}-a`, `m${i % 4}`);
        await s.tasks.recordProgress(id, `${id}-a`, 50, undefined, true);
        await s.tasks.completeAttempt(id, `${id}-a`, { sha256: "c".repeat(64), bytes: 1 });
      }),
    );
    writing = false;
    await reader;
    await follow();
    const all = await s.db.selectFrom("events").select("id").where("id", ">", start).orderBy("id").execute();
    expect(all.length).toBeGreaterThanOrEqual(ids.length * 2);
    expect(all.map((e) => e.id).filter((id) => !seen.has(id))).toEqual([]);
    // The live view (TaskStore.changes) hears each once; not always in id order on PostgreSQL,
    // where two commits can come back the other way round (the SSE routes allow for it).
    expect([...emitted].sort((a, b) => a - b)).toEqual(all.map((e) => e.id));
  });

  it("a transaction writing events waits for the one before it to commit, so no id shows before a lower one", async () => {
    const task = await s.tasks.createTask(newTask());
    const event = (trx: Parameters<typeof inEventOrder>[0] & typeof s.db) =>
      trx
        .insertInto("events")
        .values({ task_id: task.id, at: "2025-01-01T00:00:00.000Z", type: "waiting" })
        .returning("id")
        .executeTakeFirstOrThrow();
    let commitFirst = () => {};
    const firstMayCommit = new Promise<void>((resolve) => {
      commitFirst = resolve;
    });
    let firstWrote = (_id: number) => {};
    const firstId = new Promise<number>((resolve) => {
      firstWrote = resolve;
    });
    const first = s.db.transaction().execute(async (trx) => {
      await inEventOrder(trx);
      firstWrote((await event(trx)).id);
      await firstMayCommit;
    });
    const a = await firstId;
    const second = s.db.transaction().execute(async (trx) => {
      await inEventOrder(trx);
      return (await event(trx)).id;
    });
    try {
      if (backend.name === "postgres") {
        await until(async () => {
          const { rows } = await sql<{
            n: number;
          }>`select count(*) as n from pg_locks where not granted`.execute(s.db);
          return Number(rows[0]?.n) > 0;
        }, 10_000);
        // While the first is open, nothing after it is visible: a reader following ids skips none.
        const visible = await s.db.selectFrom("events").select("id").where("id", ">=", a).execute();
        expect(visible).toEqual([]);
      }
    } finally {
      commitFirst();
      await first;
    }
    expect(await second).toBeGreaterThan(a);
  });
});
