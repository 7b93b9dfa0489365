import { once } from "node:events";
import { readdir, stat } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { GatewayHandle } from "../../src/gateway/server.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { createTask, getTask, writeMachines } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { until } from "../helpers/until.js";

/**
 * Several gateways on one PostgreSQL store and one blob folder (issue 13), in this process: each
 * serves the whole API, one dispatches. Killed processes and a cut database are the chaos test's
 * (test/e2e/chaos.test.ts); here each rule is shown step by step with an engine the test steers.
 */
describe.skipIf(!postgresAvailable)("several gateways on one PostgreSQL store", () => {
  let dir: string;
  let database: TestDatabase;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let receiver: Receiver;
  let audio: string;
  let video: string;
  const gateways: GatewayHandle[] = [];

  beforeEach(async () => {
    dir = await tempDir("mh-several-");
    database = await createTestDatabase();
    engine = new GateEngine(2);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeMachines(join(dir, "machines.json"), [{ name: "gpu", port: worker.port, max_concurrent: 2 }]);
    receiver = await startReceiver();
    audio = join(dir, "a.wav");
    video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
  });
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.close();
    await worker.close();
    await receiver.close();
    await database.drop();
    await removeDir(dir);
  });

  const start = async (name: string) => {
    const gateway = await startTestGateway(
      {
        store: database.url,
        config: join(dir, "machines.json"),
        blobsDir: join(dir, "shared-blobs"),
      },
      join(dir, name),
    );
    gateways.push(gateway);
    return gateway;
  };
  const dispatching = async (gateway: GatewayHandle) => {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    return /^multi_heygem_gateway_dispatching 1$/m.test(text);
  };
  const statusOn = async (gateway: GatewayHandle, id: string) => (await getTask(gateway.url, id)).status;

  it("serves the whole API from every gateway while one dispatches: sync waits, cancels, callbacks once", async () => {
    const a = await start("a");
    const b = await start("b");
    expect(await dispatching(a)).toBe(true);
    expect(await dispatching(b)).toBe(false);

    // Submitted to B (which dispatches nothing), placed by A, its files in the shared folder.
    const id = await createTask(b.url, audio, video, { callback_url: `${receiver.url}/hook` });
    await until(() => engine.running.length === 1, 20_000);
    // Job ids are attempt ids: the first job is this task's.
    const [taskJob] = engine.running;
    // A sync wait on B for the task A runs answers when A completes it.
    const sync = fetch(`${b.url}/tasks/sync`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    await until(() => engine.running.length === 2, 20_000);
    const syncJob = engine.running.find((job) => job !== taskJob);
    if (!syncJob || !taskJob) throw new Error("two jobs expected");
    engine.release(syncJob);
    const answered = await sync;
    expect(answered.status).toBe(200);
    expect(answered.headers.get("content-type")).toBe("video/mp4");
    expect(Buffer.from(await answered.arrayBuffer()).toString()).toBe(`result of ${syncJob}`);

    // Cancelled through B: A stops the job on the machine.
    expect(engine.running).toEqual([taskJob]);
    const cancelled = await fetch(`${b.url}/tasks/${id}/cancel`, { method: "POST" });
    expect(cancelled.status).toBe(200);
    await until(() => engine.running.length === 0, 20_000);
    expect(await statusOn(a, id)).toBe("cancelled");

    // Each status change called back once, by one gateway, each with its own webhook-id.
    await until(() => receiver.received.filter((r) => r.body.status === "cancelled").length === 1, 20_000);
    const statuses = receiver.received.map((r) => r.body.status);
    expect(statuses).toEqual(["pending", "processing", "cancelled"]);
    const ids = receiver.received.map((r) => r.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(3);
  });

  it("shares drains and the fleet's view, and hands dispatching over with the attempts under way", async () => {
    const a = await start("a");
    const b = await start("b");
    const id = await createTask(a.url, audio, video);
    await until(() => engine.running.length === 1, 20_000);
    const machines = async (g: GatewayHandle) =>
      (
        (await (await fetch(`${g.url}/machines`)).json()) as {
          machines: { name: string; running: number; draining: boolean }[];
        }
      ).machines;
    // B does not run the attempt, yet shows the load A publishes.
    await until(async () => (await machines(b))[0]?.running === 1, 20_000);
    expect((await machines(a))[0]?.running).toBe(1);

    // Drained through B: A places nothing more there.
    expect((await fetch(`${b.url}/machines/gpu/drain`, { method: "POST" })).status).toBe(200);
    await until(async () => (await machines(a))[0]?.draining === true, 20_000);
    const waiting = await createTask(b.url, audio, video);
    expect(await statusOn(a, waiting)).toBe("pending");
    expect(engine.running.length).toBe(1);

    // A goes (its term ends, its attempt runs on): B takes over and re-attaches, no second run.
    await a.close();
    gateways.splice(gateways.indexOf(a), 1);
    await until(() => dispatching(b), 20_000);
    const [job] = engine.running;
    if (!job) throw new Error("the job should still run");
    engine.release(job);
    await until(async () => (await statusOn(b, id)) === "completed", 20_000);
    expect(engine.started.filter((j) => j.id === job).length).toBe(1);

    // The drain set on B holds under B's term; resumed, the waiting task runs.
    expect(await statusOn(b, waiting)).toBe("pending");
    expect((await fetch(`${b.url}/machines/gpu/resume`, { method: "POST" })).status).toBe(200);
    await until(() => engine.running.length === 1, 20_000);
    const [next] = engine.running;
    if (!next) throw new Error("the waiting task should run");
    engine.release(next);
    await until(async () => (await statusOn(b, waiting)) === "completed", 20_000);
    expect(engine.maxInFlight).toBeLessThanOrEqual(2);
  });
  it("a gateway that starts on the shared blob folder leaves another's upload under way alone", async () => {
    const a = await start("a");
    // An upload to A, held with the last of its video unsent: its audio, whole, waits in a temp
    // file of the shared folder (the video, under a megabyte, is held in memory until it is whole).
    const form = new Response(await taskForm({ audio: { path: audio }, video: { path: video } }));
    const body = Buffer.from(await form.arrayBuffer());
    const upload = httpRequest(`${a.url}/tasks`, {
      method: "POST",
      headers: { "content-type": form.headers.get("content-type") ?? "", "content-length": body.length },
    });
    const answered = once(upload, "response").then(async ([res]) => {
      let text = "";
      for await (const chunk of res as IncomingMessage) text += String(chunk);
      return { status: (res as IncomingMessage).statusCode, text };
    });
    const half = body.length - 1024;
    upload.write(body.subarray(0, half));
    const tmp = join(dir, "shared-blobs", ".tmp");
    await until(async () => {
      const sizes = await Promise.all((await readdir(tmp)).map(async (n) => (await stat(join(tmp, n))).size));
      return sizes.filter((size) => size > 0).length === 1;
    }, 20_000);

    // B's start clears what a crash of B left there, and nothing of A's.
    await start("b");
    upload.end(body.subarray(half));
    const answer = await answered;
    expect(answer.status, answer.text).toBe(200);
    const { task_id: id } = JSON.parse(answer.text) as { task_id: string };
    await until(() => engine.running.length === 1, 20_000);
    engine.release(engine.running[0] as string);
    await until(async () => (await statusOn(a, id)) === "completed", 20_000);
  });
});
