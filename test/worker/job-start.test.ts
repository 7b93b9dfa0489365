import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { JobView } from "../../src/protocol/schemas.js";
import { JobJournal, parseJournal } from "../../src/worker/job-journal.js";
import { type JobRecord, JobRecords } from "../../src/worker/job-records.js";
import { JobRunner } from "../../src/worker/job-runner.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { cacheWithOneBlob, silentLogger } from "./harness.js";

/** Job records whose write of a state (`running` unless told) for one job waits until the test lets it land. */
class HeldRecords extends JobRecords {
  private letGo: () => void = () => undefined;
  private readonly held = new Promise<void>((resolve) => {
    this.letGo = resolve;
  });
  holdId: string | undefined;
  holdStatus: JobView["status"] = "running";

  release(): void {
    this.letGo();
  }

  override async save(record: JobRecord): Promise<void> {
    if (record.view.status === this.holdStatus && record.view.id === this.holdId) await this.held;
    return super.save(record);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function setUp() {
  const dir = await mkdtemp(join(tmpdir(), "mh-job-start-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const { layout, blobs, blob } = await cacheWithOneBlob(dir);
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
  const onDisk = async (id: string) =>
    (JSON.parse(await readFile(join(layout.jobs, `${id}.json`), "utf8")) as JobRecord).view.status;
  const onDiskOrNone = (id: string) => onDisk(id).catch(() => undefined);
  const journaled = async (id: string) =>
    parseJournal(await readFile(join(dir, "journal.jsonl"), "utf8").catch(() => ""))
      .filter((l) => l.job_id === id)
      .map((l) => l.event);
  return { runner, engine, records, blob, onDisk, onDiskOrNone, journaled };
}

/**
 * A kill -9 of the agent as a job starts: at the next start a `queued` record runs and a
 * `running` one fails (recoverRecord), so the engine must not begin, nor the journal say so,
 * before the record says `running` on disk; else the job the engine began runs again, which a
 * chaos run (test/e2e/chaos.test.ts) counts as a completing attempt run twice.
 */
describe("a job's start", () => {
  it("into a free slot: written `running` once, then the engine begins and the journal says so", async () => {
    const { runner, engine, records, blob, onDisk, onDiskOrNone, journaled } = await setUp();
    records.holdId = "a1";
    let answer: JobView | undefined;
    const submitted = runner.submit("a1", { audio: blob, video: blob }).then((r) => {
      answer = r.view;
    });
    // Nothing is on disk yet, so a kill -9 now loses a job the gateway was never told of (it puts
    // the job again): nothing may have run. (Waiting for something not to happen.)
    await delay(500);
    expect(await onDiskOrNone("a1")).toBeUndefined();
    expect(engine.started).toEqual([]);
    expect(await journaled("a1")).toEqual([]);
    expect(answer).toBeUndefined();

    records.release();
    await submitted;
    expect(answer).toMatchObject({ status: "running", version: 0 });
    expect(answer?.started_at).toBe(answer?.created_at);
    expect(await onDisk("a1")).toBe("running");
    await until(() => engine.isRunning("a1"));
    await until(async () => (await journaled("a1")).includes("started"));
    expect(await journaled("a1")).toEqual(["accepted", "started"]);
  });

  it("from the queue: `queued` on disk until the write that says `running` lands", async () => {
    const { runner, engine, records, blob, onDisk, journaled } = await setUp();
    await runner.submit("a1", { audio: blob, video: blob });
    await until(() => engine.isRunning("a1"));
    records.holdId = "a2";
    const { view } = await runner.submit("a2", { audio: blob, video: blob });
    expect(view.status).toBe("queued");
    engine.release("a1");
    await until(() => runner.view("a1").status === "succeeded");
    // A kill -9 now would find a2 queued, and run it at the next start: so it may not have run.
    await delay(500);
    expect(await onDisk("a2")).toBe("queued");
    expect(engine.started.map((j) => j.id)).toEqual(["a1"]);
    expect(await journaled("a2")).toEqual(["accepted"]);

    records.release();
    await until(() => engine.isRunning("a2"));
    expect(await onDisk("a2")).toBe("running");
    await until(async () => (await journaled("a2")).includes("started"));
    expect(await journaled("a2")).toEqual(["accepted", "started"]);
  });

  /**
   * A job is visible (health, GET) while its first record is written, so the gateway's cancel can
   * reach it then: the delete waits for the acceptance, the job never begins, and the journal
   * reads in order, which audits of `max_concurrent` depend on (peakConcurrency).
   */
  it.each([
    ["into a free slot", "running"],
    ["into the queue", "queued"],
  ] as const)("deleted while its first record is written, %s: it never begins", async (_, holdStatus) => {
    const { runner, engine, records, blob, onDiskOrNone, journaled } = await setUp();
    if (holdStatus === "queued") {
      await runner.submit("a0", { audio: blob, video: blob });
      await until(() => engine.isRunning("a0"));
    }
    records.holdId = "a1";
    records.holdStatus = holdStatus;
    const submitted = runner.submit("a1", { audio: blob, video: blob });
    await until(() => runner.view("a1").status === holdStatus);
    const deleted = runner.delete("a1");
    records.release();
    expect((await submitted).view.status).toBe("cancelled");
    expect((await deleted).status).toBe("cancelled");
    expect(await onDiskOrNone("a1")).toBeUndefined();
    expect(await journaled("a1")).toEqual(["accepted", "finished", "deleted"]);
    if (holdStatus === "queued") engine.release("a0");
    // Its slot is free again: the next job starts.
    await runner.submit("a2", { audio: blob, video: blob });
    await until(() => engine.isRunning("a2"));
    expect(engine.started.map((j) => j.id)).not.toContain("a1");
  });
});
