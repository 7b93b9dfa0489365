import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { BlobCache } from "../../src/worker/blob-cache.js";
import { JobJournal, parseJournal } from "../../src/worker/job-journal.js";
import { type JobRecord, JobRecords } from "../../src/worker/job-records.js";
import { JobRunner } from "../../src/worker/job-runner.js";
import { workerLayout } from "../../src/worker/layout.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { silentLogger } from "./harness.js";

/** Job records whose write of a `running` state waits until the test lets it land. */
class HeldRecords extends JobRecords {
  private letGo: () => void = () => undefined;
  private readonly held = new Promise<void>((resolve) => {
    this.letGo = resolve;
  });

  release(): void {
    this.letGo();
  }

  override async save(record: JobRecord): Promise<void> {
    if (record.view.status === "running") await this.held;
    return super.save(record);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/**
 * A kill -9 of the agent as a job starts: at the next start a `queued` record runs and a
 * `running` one fails (recoverRecord), so the engine must not begin, nor the journal say so,
 * before the record says `running` on disk; else the job the engine began runs again, which a
 * chaos run (test/e2e/chaos.test.ts) counts as a completing attempt run twice.
 */
describe("a job's start", () => {
  it("is on disk before the engine begins and before the journal says it started", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mh-job-start-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const layout = workerLayout(dir);
    const store = new BlobStore(layout.blobs);
    const blobs = new BlobCache({
      store,
      maxBytes: 0,
      pinned: () => new Set(),
      now: Date.now,
      logger: silentLogger,
    });
    await blobs.init();
    const blob = await store.put(Readable.from([Buffer.from("media")]));
    await blobs.init();
    const engine = new GateEngine(1);
    const records = new HeldRecords(layout.jobs, silentLogger);
    const journal = new JobJournal(dir);
    await journal.open();
    cleanups.push(() => journal.close());
    const runner = await JobRunner.start({ engine, blobs, records, layout, logger: silentLogger, journal });
    cleanups.push(async () => {
      records.release();
      await runner.close();
    });

    await runner.submit("a1", { audio: blob, video: blob });
    const onDisk = async () =>
      (JSON.parse(await readFile(join(layout.jobs, "a1.json"), "utf8")) as JobRecord).view.status;
    const journaled = async () =>
      parseJournal(await readFile(join(dir, "journal.jsonl"), "utf8").catch(() => "")).map((l) => l.event);
    await until(async () => (await journaled()).includes("accepted"));
    // A kill -9 now would find the job queued, and run it at the next start: so nothing may have
    // run. (Waiting for something not to happen: a moment is all the engine would need.)
    await delay(500);
    expect(await onDisk()).toBe("queued");
    expect(engine.started).toEqual([]);
    expect(await journaled()).toEqual(["accepted"]);

    records.release();
    await until(() => engine.isRunning("a1"));
    expect(await onDisk()).toBe("running");
    await until(async () => (await journaled()).includes("started"));
    expect(await journaled()).toEqual(["accepted", "started"]);
  });
});
