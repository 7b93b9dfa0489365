import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type JobRecord, JobRecords, recoverRecord } from "../../src/worker/job-records.js";
import { sha256, silentLogger } from "./harness.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function store(): Promise<JobRecords> {
  const dir = await mkdtemp(join(tmpdir(), "mh-records-"));
  dirs.push(dir);
  return new JobRecords(dir, silentLogger);
}

function record(id: string, status: JobRecord["view"]["status"], version = 0): JobRecord {
  const ref = { sha256: sha256(id), bytes: 1 };
  return {
    seq: version,
    input: { audio: ref, video: ref, options: { chaofen: 0, watermark_switch: 0, pn: 1 } },
    view: { id, status, progress: version, created_at: "2024-01-01T00:00:00.000Z", version },
  };
}

describe("job records", () => {
  it("keeps the newest of many quick saves", async () => {
    const records = await store();
    await records.loadAll();
    const saves = Array.from({ length: 50 }, (_, i) => records.save(record("a1", "running", i)));
    await Promise.all(saves);
    const onDisk = JSON.parse(await readFile(join(records.dir, "a1.json"), "utf8")) as JobRecord;
    expect(onDisk.view.version).toBe(49);
    expect(await readdir(records.dir)).toEqual(["a1.json"]);
  });

  it("does not let a pending save bring a removed record back", async () => {
    const records = await store();
    await records.loadAll();
    void records.save(record("a1", "queued", 0));
    void records.save(record("a1", "cancelled", 1));
    await records.remove("a1");
    await records.flush();
    expect(await readdir(records.dir)).toEqual([]);
  });

  it("loads records in acceptance order, skipping leftovers and unreadable files", async () => {
    const records = await store();
    await records.loadAll();
    await records.save({ ...record("late", "queued"), seq: 7 });
    await records.save({ ...record("early", "queued"), seq: 2 });
    await writeFile(join(records.dir, "half.1234.tmp"), "{");
    await writeFile(join(records.dir, "broken.json"), "{ not json");

    const loaded = await records.loadAll();
    expect(loaded.map((r) => r.view.id)).toEqual(["early", "late"]);
    expect((await readdir(records.dir)).sort()).toEqual(["broken.json", "early.json", "late.json"]);
  });

  it("turns only running records into machine failures on recovery", () => {
    const now = new Date("2024-01-02T00:00:00.000Z");
    const running = {
      ...record("r", "running", 3),
      view: { ...record("r", "running", 3).view, message: "step" },
    };
    const recovered = recoverRecord(running, now);
    expect(recovered.view).toMatchObject({ status: "failed", version: 4, finished_at: now.toISOString() });
    expect(recovered.view.error?.kind).toBe("machine");
    expect(recovered.view.message).toBeUndefined();
    for (const status of ["queued", "succeeded", "failed", "cancelled"] as const) {
      const r = record("x", status);
      expect(recoverRecord(r, now)).toBe(r);
    }
  });
});
