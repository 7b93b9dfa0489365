import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobCache } from "../../src/worker/blob-cache.js";
import { JobRecords } from "../../src/worker/job-records.js";
import { JobRunner } from "../../src/worker/job-runner.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { until } from "../helpers/until.js";
import { cacheWithOneBlob, silentLogger } from "./harness.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function runnerWithJob(): Promise<{ runner: JobRunner; engine: GateEngine }> {
  const dir = await mkdtemp(join(tmpdir(), "mh-runner-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const { layout, blobs, blob } = await cacheWithOneBlob(dir);
  const engine = new GateEngine(1);
  const runner = await JobRunner.start({
    engine,
    blobs,
    records: new JobRecords(layout.jobs, silentLogger),
    layout,
    logger: silentLogger,
  });
  cleanups.push(() => runner.close());
  await runner.submit("a1", { audio: blob, video: blob });
  await until(() => engine.isRunning("a1"));
  return { runner, engine };
}

describe("job runner long-polls", () => {
  it("lets go of a waiter when its client goes away", async () => {
    const { runner } = await runnerWithJob();
    const gone = new AbortController();
    const { version } = runner.view("a1");
    const wait = runner.waitForChange("a1", version, 60_000, gone.signal);
    expect(runner.waiting).toBe(1);
    gone.abort();
    expect((await wait).version).toBe(version);
    expect(runner.waiting).toBe(0);
  });

  it("lets go of a waiter on timeout and on a change", async () => {
    const { runner, engine } = await runnerWithJob();
    const signal = new AbortController().signal;
    const { version } = runner.view("a1");
    expect((await runner.waitForChange("a1", version, 5, signal)).version).toBe(version);
    expect(runner.waiting).toBe(0);

    const waits = [1, 2, 3].map(() => runner.waitForChange("a1", version, 60_000, signal));
    expect(runner.waiting).toBe(3);
    engine.progress("a1", 10);
    for (const view of await Promise.all(waits)) expect(view.progress).toBe(10);
    expect(runner.waiting).toBe(0);
  });

  it("ends every long-poll when it closes", async () => {
    const { runner } = await runnerWithJob();
    const { version } = runner.view("a1");
    const wait = runner.waitForChange("a1", version, 60_000, new AbortController().signal);
    await runner.close();
    expect((await wait).status).toBe("running");
    expect(runner.view("a1")).toMatchObject({ status: "failed", error: { kind: "machine" } });
  });
});

describe("job runner start", () => {
  it("starts a job without waiting for its inputs to be marked used in the cache", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mh-runner-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    // Marking inputs used only orders the cache's eviction (a file time each): held here, the job
    // must start all the same, and the PUT answers once it is done.
    let releaseUsed = () => {};
    const usedHeld = new Promise<void>((resolve) => {
      releaseUsed = resolve;
    });
    class SlowToMark extends BlobCache {
      override async used(sha256s: readonly string[]): Promise<void> {
        await usedHeld;
        await super.used(sha256s);
      }
    }
    const { layout, blobs, blob } = await cacheWithOneBlob(dir, SlowToMark);
    const engine = new GateEngine(1);
    const runner = await JobRunner.start({
      engine,
      blobs,
      records: new JobRecords(layout.jobs, silentLogger),
      layout,
      logger: silentLogger,
    });
    cleanups.push(() => runner.close());
    let answered = false;
    const submitted = runner.submit("a1", { audio: blob, video: blob }).then((answer) => {
      answered = true;
      return answer;
    });
    await until(() => engine.isRunning("a1"));
    expect(runner.view("a1").status).toBe("running");
    expect(answered).toBe(false);
    releaseUsed();
    expect((await submitted).created).toBe(true);
  });
});
