import { CompiledQuery, sql } from "kysely";
import { afterEach, beforeEach, expect, it } from "vitest";
import { latestRuns, MachineStore } from "../../src/store/machine-store.js";
import { MediaFactsStore } from "../../src/store/media-facts-store.js";
import { probeWritable } from "../../src/store/ops-queries.js";
import { RetentionStore } from "../../src/store/retention-store.js";
import { TaskStore } from "../../src/store/task-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

describeStores("machine store, media facts and the write probe", (backend) => {
  let dir: string;
  let s: TestStore;

  beforeEach(async () => {
    dir = await tempDir("mh-machines-");
    s = await openTestStore(dir, undefined, backend);
  });
  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  it("keeps draining flags across a restart, set and cleared in place", async () => {
    const machines = new MachineStore(s.db);
    await machines.setDraining("gpu-1", true);
    await machines.setDraining("gpu-2", true);
    await machines.setDraining("gpu-2", false);
    await machines.setDraining("gpu-1", true);
    await s.close();
    s = await openTestStore(dir, undefined, backend);
    expect(await new MachineStore(s.db).drainingMachines()).toEqual(new Set(["gpu-1"]));
    expect(await s.db.selectFrom("machine_flags").select("name").orderBy("name").execute()).toEqual([
      { name: "gpu-1" },
      { name: "gpu-2" },
    ]);
  });

  it("counts each machine's attempts and seeds the speed model from its latest runs", async () => {
    let clock = Date.parse("2025-01-01T00:00:00.000Z");
    const tasks = new TaskStore(s.db, () => new Date(clock));
    const run = async (machine: string, seconds: number, ok: boolean) => {
      clock += 1000;
      const task = await tasks.createTask(
        newTask({ audio: { sha256: "a".repeat(64), name: "a.wav", bytes: 1, duration: 4 } }),
      );
      await tasks.startAttempt(task.id, `${task.id}-a`, machine);
      if (ok)
        await tasks.completeAttempt(task.id, `${task.id}-a`, { sha256: "c".repeat(64), bytes: 1 }, seconds);
      else await tasks.failAttempt(task.id, `${task.id}-a`, { kind: "machine", message: "x", retry: false });
    };
    await run("gpu-1", 2, true);
    await run("gpu-1", 6, true);
    await run("gpu-1", 1, false);
    await run("gpu-2", 10, true);
    const machines = new MachineStore(s.db);
    expect(await machines.counts()).toEqual(
      new Map([
        ["gpu-1", { done: 2, failed: 1 }],
        ["gpu-2", { done: 1, failed: 0 }],
      ]),
    );
    expect(await machines.recentSpeeds(1)).toEqual([
      { machine: "gpu-1", secondsPerAudioSecond: 1.5 },
      { machine: "gpu-2", secondsPerAudioSecond: 2.5 },
    ]);
  });

  it("keeps the counts with the attempt rows: retention's deletions take theirs out", async () => {
    const tasks = new TaskStore(s.db);
    const finish = async (machine: string, ok: boolean) => {
      const task = await tasks.createTask(newTask());
      await tasks.startAttempt(task.id, `${task.id}-a`, machine);
      if (ok) await tasks.completeAttempt(task.id, `${task.id}-a`, { sha256: "c".repeat(64), bytes: 1 }, 1);
      else await tasks.failAttempt(task.id, `${task.id}-a`, { kind: "input", message: "x", retry: false });
      return task.id;
    };
    const first = await finish("gpu-1", true);
    await finish("gpu-1", true);
    const failed = await finish("gpu-2", false);
    // A cancelled attempt counts neither way.
    const cancelled = await tasks.createTask(newTask());
    await tasks.startAttempt(cancelled.id, "att-c", "gpu-2");
    await tasks.cancelTask(cancelled.id, "processing", "cancelled by the client");
    const machines = new MachineStore(s.db);
    expect(await machines.counts()).toEqual(
      new Map([
        ["gpu-1", { done: 2, failed: 0 }],
        ["gpu-2", { done: 0, failed: 1 }],
      ]),
    );
    const released = await new RetentionStore(s.db, tasks).deleteFinished([first, failed, cancelled.id]);
    expect(released.tasks).toHaveLength(3);
    // gpu-2 has no history left, and no row either.
    expect(await machines.counts()).toEqual(new Map([["gpu-1", { done: 1, failed: 0 }]]));
    expect(await s.db.selectFrom("machine_totals").select("machine").execute()).toEqual([
      { machine: "gpu-1" },
    ]);
  });

  it("starts the counts from the attempts a store already holds when it is migrated", async () => {
    const tasks = new TaskStore(s.db);
    for (const [machine, ok] of [
      ["gpu-1", true],
      ["gpu-1", false],
      ["gpu-3", true],
    ] as const) {
      const task = await tasks.createTask(newTask());
      await tasks.startAttempt(task.id, `${task.id}-a`, machine);
      if (ok) await tasks.completeAttempt(task.id, `${task.id}-a`, { sha256: "c".repeat(64), bytes: 1 });
      else await tasks.failAttempt(task.id, `${task.id}-a`, { kind: "input", message: "x", retry: false });
    }
    // The store as it was before migration 0015 (and 0016, which came after it): attempts, no totals.
    await s.db.schema.dropTable("machine_totals").execute();
    await s.db.schema.dropTable("task_totals").execute();
    await sql`delete from kysely_migration where name in ('0015_machine_totals', '0016_task_totals')`.execute(
      s.db,
    );
    await s.close();
    s = await openTestStore(dir, undefined, backend);
    expect(await new MachineStore(s.db).counts()).toEqual(
      new Map([
        ["gpu-1", { done: 1, failed: 1 }],
        ["gpu-3", { done: 1, failed: 0 }],
      ]),
    );
  });

  // SQLite's planner has no statistics (the store never runs ANALYZE): its plan comes from the
  // indexes alone. PostgreSQL's plans for a few rows say nothing of its plans for many.
  it.skipIf(backend.name !== "sqlite")(
    "reads the latest runs backwards along an index, without sorting every attempt",
    async () => {
      const query = latestRuns(s.db, 1000).compile();
      const { rows } = await s.db.executeQuery<{ detail: string }>(
        CompiledQuery.raw(`explain query plan ${query.sql}`, [...query.parameters]),
      );
      const plan = rows.map((r) => r.detail).join("; ");
      expect(plan).toContain("attempts_ended");
      expect(plan).not.toContain("TEMP B-TREE");
    },
  );

  it("measures a blob's media once: a second put of the same hash keeps the first", async () => {
    const facts = new MediaFactsStore(s.db);
    const info = { duration: 2.5, streams: [] } as unknown as Parameters<MediaFactsStore["put"]>[1];
    await facts.put("a".repeat(64), info, "header");
    await facts.put("a".repeat(64), { ...info, duration: 9 } as typeof info, "ffprobe");
    expect(await facts.get("a".repeat(64))).toEqual(info);
    expect(await facts.get("b".repeat(64))).toBeUndefined();
  });

  it("proves the store takes a write, and leaves nothing behind", async () => {
    await probeWritable(s.db, new Date().toISOString());
    await probeWritable(s.db, new Date().toISOString());
    expect(await s.db.selectFrom("machine_flags").selectAll().execute()).toEqual([]);
  });
});
