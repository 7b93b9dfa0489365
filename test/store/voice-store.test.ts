import { afterEach, beforeEach, expect, it } from "vitest";
import { blobNeeded } from "../../src/store/blob-references.js";
import { type NewVoiceInput, VoiceStore } from "../../src/store/voice-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

describeStores("voice store", (backend) => {
  let dir: string;
  let s: TestStore;
  let voices: VoiceStore;
  let clock = Date.parse("2025-01-01T00:00:00.000Z");

  beforeEach(async () => {
    dir = await tempDir("mh-voices-");
    s = await openTestStore(dir, undefined, backend);
    voices = new VoiceStore(s.db, () => new Date(clock));
  });
  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  const voice = (id: string, over: Partial<NewVoiceInput> = {}): NewVoiceInput => ({
    id,
    owner: null,
    name: null,
    lang: "en",
    sha256: "f".repeat(64),
    fileName: "ref.wav",
    bytes: 1000,
    duration: 3.5,
    referenceText: null,
    avatarId: null,
    ...over,
  });

  it("lists voices newest first, one owner's or all, with the total", async () => {
    const made = [];
    for (const owner of ["alice", "bob", "alice"]) {
      clock += 1000;
      made.push(await voices.create(voice(`v-${made.length}`, { owner, name: `voice of ${owner}` })));
    }
    expect(made.map((v) => v.seq)).toEqual([...made.map((v) => v.seq)].sort((a, b) => a - b));
    expect(made[0]).toMatchObject({ created_at: "2025-01-01T00:00:01.000Z", duration: 3.5, lang: "en" });
    const alice = await voices.list({ owner: "alice", limit: 10, offset: 0 });
    expect(alice.voices.map((v) => v.id)).toEqual(["v-2", "v-0"]);
    expect(alice.total).toBe(2);
    const all = await voices.list({ limit: 1, offset: 1 });
    expect(all).toMatchObject({ total: 3, voices: [{ id: "v-1" }] });
    expect(await voices.get("v-1")).toMatchObject({ owner: "bob" });
    expect(await voices.get("nope")).toBeUndefined();
  });

  it("refuses to delete a voice a live task speaks in; deleted, its recording is free unless shared", async () => {
    await voices.create(voice("v-1"));
    await voices.create(voice("v-2", { sha256: "e".repeat(64) }));
    const task = await s.tasks.createTask(newTask());
    await s.db.updateTable("tasks").set({ voice_id: "v-1" }).where("id", "=", task.id).execute();

    expect(await voices.delete("v-1")).toEqual({ outcome: "in_use", liveTasks: 1 });
    await s.tasks.cancelTask(task.id, "pending", "no longer wanted");
    await voices.create(voice("v-3"));
    expect(await voices.delete("v-1")).toEqual({ outcome: "deleted", blobs: [] });
    expect(await blobNeeded(s.db, "f".repeat(64))).toBe(true);
    expect(await voices.delete("v-3")).toEqual({ outcome: "deleted", blobs: ["f".repeat(64)] });
    expect(await blobNeeded(s.db, "f".repeat(64))).toBe(false);
    expect(await voices.delete("v-3")).toEqual({ outcome: "missing" });
    expect(await blobNeeded(s.db, "e".repeat(64))).toBe(true);
  });
});
