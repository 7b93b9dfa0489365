import { createHash, randomBytes } from "node:crypto";
import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { CompiledQuery, sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { RetentionSweeper } from "../../src/gateway/retention-sweeper.js";
import { createLogger } from "../../src/logger.js";
import { AvatarStore } from "../../src/store/avatar-store.js";
import { blobNeeded, blobReferences, referencesQuery } from "../../src/store/blob-references.js";
import { RetentionStore } from "../../src/store/retention-store.js";
import { VoiceStore } from "../../src/store/voice-store.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;

describeStores("retention sweep", (backend) => {
  let dir: string;
  let clock: FakeClock;
  let store: TestStore;
  let blobs: BlobStore;
  let sweeper: RetentionSweeper;

  beforeEach(async () => {
    dir = await tempDir();
    clock = new FakeClock();
    store = await openTestStore(dir, () => new Date(clock.now()), backend);
    blobs = new BlobStore(join(dir, "blobs"));
    await blobs.init();
    sweeper = makeSweeper({});
  });
  afterEach(async () => {
    await sweeper.close();
    await store.close();
    await removeDir(dir);
  });

  function makeSweeper(over: { retentionMs?: number; retentionRowsMs?: number; batchSize?: number }) {
    return new RetentionSweeper({
      clock,
      store: new RetentionStore(store.db, store.tasks, () => new Date(clock.now())),
      blobs,
      needed: (sha) => blobNeeded(store.db, sha),
      logger: createLogger({ level: "silent" }),
      retentionMs: over.retentionMs ?? 7 * DAY,
      retentionRowsMs: over.retentionRowsMs ?? 30 * DAY,
      everyMs: 60_000,
      batchSize: over.batchSize ?? 100,
    });
  }

  /** A blob in the store, with media facts as an upload would leave them. */
  async function blob(label: string): Promise<{ sha256: string; bytes: number; name: string }> {
    const body = Buffer.concat([Buffer.from(label), randomBytes(256)]);
    const put = await blobs.put(Readable.from([body]));
    await store.db
      .insertInto("media_facts")
      .values({
        sha256: put.sha256,
        facts: "{}",
        source: "header",
        created_at: new Date(clock.now()).toISOString(),
      })
      .execute();
    return { ...put, name: label };
  }

  async function finishedTask(audio: string, video: string, result: string, callback = false) {
    const task = newTask({
      audio: { sha256: audio, name: "a.wav", bytes: 1, duration: 1 },
      video: { sha256: video, name: "v.mp4", bytes: 1 },
      callbackUrl: callback ? "http://127.0.0.1:9/hook" : null,
    });
    await store.tasks.createTask(task);
    await store.tasks.startAttempt(task.id, `${task.id}-a1`, "m1");
    await store.tasks.completeAttempt(task.id, `${task.id}-a1`, { sha256: result, bytes: 1 });
    return task.id;
  }

  async function liveTask(audio: string, video: string) {
    const task = newTask({
      audio: { sha256: audio, name: "a.wav", bytes: 1, duration: 1 },
      video: { sha256: video, name: "v.mp4", bytes: 1 },
    });
    await store.tasks.createTask(task);
    return task.id;
  }

  const facts = async () =>
    (await store.db.selectFrom("media_facts").select("sha256").execute()).map((r) => r.sha256).sort();

  it("deletes an expired task's own files and keeps the template a live task shares", async () => {
    const template = await blob("template");
    const [oldAudio, oldResult, liveAudio] = [await blob("a1"), await blob("r1"), await blob("a2")];
    const old = await finishedTask(oldAudio.sha256, template.sha256, oldResult.sha256);
    clock.advance(3 * DAY);
    const live = await liveTask(liveAudio.sha256, template.sha256);
    clock.advance(5 * DAY);

    const report = await sweeper.sweep();

    expect(report).toMatchObject({ files_expired: 1, blobs_deleted: 2, tasks_deleted: 0 });
    expect(report.bytes_deleted).toBe(oldAudio.bytes + oldResult.bytes);
    expect(await blobs.has(template.sha256)).toBeDefined();
    expect(await blobs.has(liveAudio.sha256)).toBeDefined();
    expect(await blobs.has(oldAudio.sha256)).toBeUndefined();
    expect(await blobs.has(oldResult.sha256)).toBeUndefined();
    expect(await facts()).toEqual([template.sha256, liveAudio.sha256].sort());
    expect((await store.tasks.getTask(old))?.files_deleted_at).toBe(new Date(clock.now()).toISOString());
    expect((await store.tasks.getTask(live))?.files_deleted_at).toBeNull();
  });

  it("keeps a blob a finished task within retention shares, until that one expires too", async () => {
    const template = await blob("template");
    const [a1, r1, a2, r2] = [await blob("a1"), await blob("r1"), await blob("a2"), await blob("r2")];
    await finishedTask(a1.sha256, template.sha256, r1.sha256);
    clock.advance(2 * DAY);
    await finishedTask(a2.sha256, template.sha256, r2.sha256);
    clock.advance(6 * DAY);
    expect(await sweeper.sweep()).toMatchObject({ files_expired: 1, blobs_deleted: 2 });
    expect(await blobs.has(template.sha256)).toBeDefined();
    clock.advance(2 * DAY);
    expect(await sweeper.sweep()).toMatchObject({ files_expired: 1, blobs_deleted: 3 });
    expect(await blobs.has(template.sha256)).toBeUndefined();
    expect(await facts()).toEqual([]);
  });

  describe("with avatars (issue 12)", () => {
    const avatarOf = (avatars: AvatarStore, sha256: string, id: string) =>
      avatars.create({
        id,
        owner: null,
        name: null,
        sha256,
        fileName: "lin.mp4",
        bytes: 1,
        duration: 1,
        width: 64,
        height: 64,
        fps: 25,
      });

    it("keeps an avatar's video through expiry, record deletion and the orphan walk; deleting the avatar frees it", async () => {
      const avatars = new AvatarStore(store.db, () => new Date(clock.now()));
      const template = await blob("template");
      await avatarOf(avatars, template.sha256, "avatar-1");
      const [a1, r1, a2, r2] = [await blob("a1"), await blob("r1"), await blob("a2"), await blob("r2")];
      await finishedTask(a1.sha256, template.sha256, r1.sha256);
      await finishedTask(a2.sha256, template.sha256, r2.sha256);
      clock.advance(8 * DAY);
      // The avatar and two expired tasks share the video: the tasks' own files go, the video stays.
      expect(await sweeper.sweep()).toMatchObject({ files_expired: 2, blobs_deleted: 4 });
      expect(await blobs.has(template.sha256)).toBeDefined();
      clock.advance(30 * DAY);
      const aged = new Date(clock.now() - 2 * HOUR);
      await utimes(blobs.path(template.sha256), aged, aged);
      expect(await sweeper.sweep()).toMatchObject({ tasks_deleted: 2, orphan_blobs: 0, orphan_facts: 0 });
      expect(await blobs.has(template.sha256)).toBeDefined();
      expect(await facts()).toEqual([template.sha256]);

      const deletion = await avatars.delete("avatar-1");
      expect(deletion).toEqual({ outcome: "deleted", blobs: [template.sha256] });
      await sweeper.releaseBlobs(deletion.outcome === "deleted" ? deletion.blobs : []);
      expect(await blobs.has(template.sha256)).toBeUndefined();
      expect(await facts()).toEqual([]);
    });

    it("refuses to delete an avatar a live task uses; once deleted, its video follows its tasks' retention", async () => {
      const avatars = new AvatarStore(store.db, () => new Date(clock.now()));
      const template = await blob("template");
      await avatarOf(avatars, template.sha256, "avatar-2");
      const [a1, r1, a2] = [await blob("a1"), await blob("r1"), await blob("a2")];
      const live = newTask({
        audio: { sha256: a2.sha256, name: "a.wav", bytes: 1, duration: 1 },
        video: { sha256: template.sha256, name: "lin.mp4", bytes: 1 },
        avatarId: "avatar-2",
      });
      await store.tasks.createTask(live);
      expect(await avatars.delete("avatar-2")).toEqual({ outcome: "in_use", liveTasks: 1 });
      await store.tasks.cancelTask(live.id, "pending", "test");
      await finishedTask(a1.sha256, template.sha256, r1.sha256);
      // Finished tasks within --retention still keep the video: nothing to free yet.
      expect(await avatars.delete("avatar-2")).toEqual({ outcome: "deleted", blobs: [] });
      expect(await avatars.delete("avatar-2")).toEqual({ outcome: "missing" });
      clock.advance(8 * DAY);
      expect(await sweeper.sweep()).toMatchObject({ files_expired: 2 });
      expect(await blobs.has(template.sha256)).toBeUndefined();
    });
  });

  describe("with voices (issue 12)", () => {
    it("keeps a voice's recording through expiry, record deletion and the orphan walk; deleting the voice frees it", async () => {
      const voices = new VoiceStore(store.db, () => new Date(clock.now()));
      const recording = await blob("recording");
      await voices.create({
        id: "voice-1",
        owner: null,
        name: null,
        lang: "zh",
        sha256: recording.sha256,
        fileName: "lin.wav",
        bytes: recording.bytes,
        duration: 1,
        referenceText: "参考文本",
        avatarId: null,
      });
      // A task whose audio was the same recording: its files expire, the recording stays.
      const [v1, r1] = [await blob("v1"), await blob("r1")];
      await finishedTask(recording.sha256, v1.sha256, r1.sha256);
      clock.advance(8 * DAY);
      expect(await sweeper.sweep()).toMatchObject({ files_expired: 1, blobs_deleted: 2 });
      expect(await blobs.has(recording.sha256)).toBeDefined();
      clock.advance(30 * DAY);
      const aged = new Date(clock.now() - 2 * HOUR);
      await utimes(blobs.path(recording.sha256), aged, aged);
      expect(await sweeper.sweep()).toMatchObject({ tasks_deleted: 1, orphan_blobs: 0, orphan_facts: 0 });
      expect(await blobs.has(recording.sha256)).toBeDefined();
      expect(await facts()).toEqual([recording.sha256]);

      const deletion = await voices.delete("voice-1");
      expect(deletion).toEqual({ outcome: "deleted", blobs: [recording.sha256] });
      await sweeper.releaseBlobs(deletion.outcome === "deleted" ? deletion.blobs : []);
      expect(await blobs.has(recording.sha256)).toBeUndefined();
      expect(await facts()).toEqual([]);
    });
  });

  it("in batches: the last expired task to share a blob frees it", async () => {
    sweeper = makeSweeper({ batchSize: 3 });
    const template = await blob("template");
    for (let i = 0; i < 10; i++)
      await finishedTask((await blob(`a${i}`)).sha256, template.sha256, template.sha256);
    clock.advance(8 * DAY);
    const report = await sweeper.sweep();
    expect(report).toMatchObject({ files_expired: 10, blobs_deleted: 11 });
    expect([...(await blobsOnDisk())]).toEqual([]);
  });

  it("deletes records after --retention-rows, with every row about them", async () => {
    const live = await liveTask((await blob("la")).sha256, (await blob("lv")).sha256);
    const id = await finishedTask(
      (await blob("a")).sha256,
      (await blob("v")).sha256,
      (await blob("r")).sha256,
      true,
    );
    const [delivery] = await store.callbacks.dueCallbacks(10);
    if (!delivery) throw new Error("no callback row");
    await store.callbacks.settleCallback(
      delivery,
      { state: "delivered", tries: 1 },
      { at: new Date(clock.now()), durationMs: 3, httpStatus: 200, error: null },
    );
    const before = await rowCounts();
    clock.advance(8 * DAY);
    await sweeper.sweep();
    expect(await rowCounts()).toEqual(before);
    clock.advance(23 * DAY);
    expect(await sweeper.sweep()).toMatchObject({ tasks_deleted: 1 });
    expect(await store.tasks.getTask(id)).toBeUndefined();
    const after = await rowCounts();
    expect(after.tasks).toBe(1);
    expect(after.callbacks).toBe(0);
    expect(after.callback_tries).toBe(0);
    expect(after.attempts).toBe(0);
    expect(after.events).toBe((await store.tasks.listEvents(live)).length);
  });

  it("DELETE's path keeps a shared blob and refuses a live task", async () => {
    const template = await blob("template");
    const [a1, r1] = [await blob("a1"), await blob("r1")];
    const done = await finishedTask(a1.sha256, template.sha256, r1.sha256);
    const live = await liveTask((await blob("a2")).sha256, template.sha256);
    expect(await sweeper.deleteTask(live)).toBe(false);
    expect(await sweeper.deleteTask(done)).toBe(true);
    expect(await store.tasks.getTask(done)).toBeUndefined();
    expect(await blobs.has(a1.sha256)).toBeUndefined();
    expect(await blobs.has(r1.sha256)).toBeUndefined();
    expect(await blobs.has(template.sha256)).toBeDefined();
    expect(await sweeper.deleteTask(done)).toBe(false);
  });

  it("removes orphan files and facts once old enough, never a referenced one", async () => {
    const kept = await blob("kept");
    await liveTask(kept.sha256, kept.sha256);
    const orphan = await blob("orphan");
    const young = await blob("young");
    const factOnly = createHash("sha256").update("refused upload").digest("hex");
    await store.db
      .insertInto("media_facts")
      .values({
        sha256: factOnly,
        facts: "{}",
        source: "header",
        created_at: new Date(clock.now()).toISOString(),
      })
      .execute();
    // Files carry real mtimes; age them against the fake clock.
    const aged = (clock.now() - 2 * HOUR) / 1000;
    for (const b of [kept, orphan]) await utimes(blobs.path(b.sha256), aged, aged);
    const fresh = clock.now() / 1000 + 2 * 3600;
    await utimes(blobs.path(young.sha256), fresh, fresh);
    clock.advance(2 * HOUR);

    const report = await sweeper.sweep();

    expect(report).toMatchObject({ orphan_blobs: 1, orphan_bytes: orphan.bytes });
    expect(await blobs.has(orphan.sha256)).toBeUndefined();
    expect(await blobs.has(kept.sha256)).toBeDefined();
    expect(await blobs.has(young.sha256)).toBeDefined();
    // The refused upload's facts and the orphan's go; those of files still there stay.
    expect(await facts()).toEqual([kept.sha256, young.sha256].sort());
    expect(report.orphan_facts).toBe(2);
  });

  // SQLite's planner has no statistics to go by, so the queries are written to steer it; PostgreSQL's
  // has them, and its plans for a few rows say nothing of its plans for many.
  it.skipIf(backend.name !== "sqlite")(
    "answers the reference question from indexes, not by scanning tasks",
    async () => {
      const plan = async (query: string) =>
        (await sql<{ detail: string }>`explain query plan ${sql.raw(query)}`.execute(store.db)).rows
          .map((r) => r.detail)
          .join("\n");
      const sha = "c".repeat(64);
      // Each source is asked with an index lookup that stops at its first row (issue 14): a
      // template shared by a million tasks costs what any blob costs, and nothing is sorted.
      const query = referencesQuery([sha, "d".repeat(64)]).compile(store.db);
      const { rows } = await store.db.executeQuery<{ detail: string }>(
        CompiledQuery.raw(`explain query plan ${query.sql}`, [...query.parameters]),
      );
      const references = rows.map((r) => r.detail).join("\n");
      for (const index of [
        "tasks_audio_blob",
        "tasks_video_blob",
        "tasks_result_blob",
        "avatars_blob",
        "voices_blob",
      ])
        expect(references).toContain(index);
      expect(references).not.toContain("TEMP B-TREE");
      expect(
        await plan(
          "select id from tasks where files_deleted_at is null and completed_at < '2030' and (status || '') in ('completed','failed') order by completed_at limit 100",
        ),
      ).toContain("tasks_files_due");
      expect(
        await plan(
          "select id from tasks where completed_at < '2030' and (status || '') in ('completed','failed') order by completed_at limit 100",
        ),
      ).toContain("tasks_completed");
      expect(await blobReferences(store.db, [sha])).toEqual(new Set());
    },
  );

  async function blobsOnDisk(): Promise<Set<string>> {
    const found = new Set<string>();
    for await (const b of blobs.list()) found.add(b.sha256);
    return found;
  }

  async function rowCounts(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const table of ["tasks", "attempts", "events", "callbacks", "callback_tries"] as const) {
      const row = await store.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      counts[table] = Number(row.n);
    }
    return counts;
  }
});
