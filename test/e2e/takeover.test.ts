import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { createTask, getTask, writeMachines } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { killAll, startGatewayProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

/**
 * A gateway that takes over dispatching (issue 13) probes the machines all along, and fences the
 * jobs it finds there that it does not follow. Until its term has re-attached to the attempts
 * under way, it follows none: a probe then would take every running job for a stale one and
 * cancel it, its work lost and run again (the chaos test, test/e2e/chaos.test.ts, saw a finished
 * job cancelled and run a second time right after a takeover). Here the takeover is held at that
 * point by a lock on the tasks table, for as many probes as it takes.
 */
describe.skipIf(!postgresAvailable)("a takeover of dispatching", () => {
  let dir: string;
  let database: TestDatabase;
  let engine: GateEngine;
  let worker: WorkerHandle;

  beforeEach(async () => {
    dir = await tempDir("mh-takeover-");
    database = await createTestDatabase();
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeMachines(join(dir, "machines.json"), [{ name: "gpu", port: worker.port, max_concurrent: 1 }]);
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
  });
  afterEach(async () => {
    await killAll();
    await worker.close();
    await database.drop();
    await removeDir(dir);
  });

  const gateway = (name: string) =>
    startGatewayProcess([
      "--store",
      database.url,
      "--blobs-dir",
      join(dir, "blobs"),
      "--data-dir",
      join(dir, name),
      "--config",
      join(dir, "machines.json"),
      "--health-interval",
      "100",
    ]);

  it("cancels no job of an attempt under way before it has re-attached to it", async () => {
    const a = await gateway("a");
    await until(async () =>
      /^multi_heygem_gateway_dispatching 1$/m.test(await (await fetch(`${a.url}/metrics`)).text()),
    );
    const b = await gateway("b");
    const id = await createTask(b.url, join(dir, "a.wav"), join(dir, "v.mp4"));
    const [job] = await until(() => engine.running.length === 1 && engine.running, 20_000);
    if (!job) throw new Error("a job expected");

    const client = new pg.Client(database.url);
    await client.connect();
    try {
      // B will be elected, then wait here to read the attempts it is to re-attach to.
      await client.query("begin");
      await client.query("lock table tasks in access exclusive mode");
      await a.kill();
      await until(
        async () =>
          Number(
            (await client.query<{ epoch: number }>("select epoch from dispatcher_term")).rows[0]?.epoch,
          ) === 2,
        20_000,
        { intervalMs: 50 },
      );
      // Elected, B probes the machine every 100 ms meanwhile. (Waiting for something that must
      // not happen: a few probes' time.)
      await until(() => !engine.isRunning(job), 2_000).catch(() => undefined);
      expect(engine.isRunning(job)).toBe(true);
    } finally {
      await client.query("commit");
      await client.end();
    }

    engine.release(job);
    const done = await until(async () => {
      const task = await getTask(b.url, id);
      return task.status !== "processing" && task.status !== "pending" && task;
    }, 20_000);
    expect(done).toMatchObject({ status: "completed", attempts: 1 });
    expect(engine.started.filter((j) => j.id === job)).toHaveLength(1);
  });
});
