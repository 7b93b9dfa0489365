import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { healthyWorker, type ScriptedAnswer, startScriptedServer } from "../helpers/scripted-server.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/**
 * A gateway whose only machine answers on the worker's port but breaks the protocol: the gateway
 * must take such answers as the machine's fault, never as a task's or a crash of its own.
 */
describe("a machine that answers outside the worker protocol", () => {
  let dir: string;
  let gateway: Gateway | undefined;
  let server: Awaited<ReturnType<typeof startScriptedServer>> | undefined;

  beforeEach(async () => {
    dir = await tempDir();
  });

  afterEach(async () => {
    await gateway?.close();
    await server?.close();
    await removeDir(dir);
    gateway = undefined;
    server = undefined;
  });

  async function start(script: (method: string, path: string) => ScriptedAnswer): Promise<Gateway> {
    server = await startScriptedServer(script);
    const machines = join(dir, "machines.json");
    const { port } = new URL(server.url);
    await writeFile(
      machines,
      JSON.stringify({
        machines: [{ name: "odd", host: "127.0.0.1", port: Number(port), max_concurrent: 1 }],
      }),
    );
    gateway = await startTestGateway({ config: machines, maxAttempts: "2" }, join(dir, "gateway"));
    return gateway;
  }

  it("a health answer that is a web page takes the machine down, and says why", async () => {
    const gw = await start(() => ({ body: "<html><title>Router login</title></html>" }));
    const machine = await until(() => {
      const odd = gw.fleet.get("odd");
      return odd?.state === "down" && odd;
    });
    expect(machine.lastError).toMatch(
      /GET http:\/\/127\.0\.0\.1:\d+\/v1\/health: HTTP 200, not a worker's health/,
    );
    expect(machine.lastError).toContain('body: an HTML page titled "Router login"');
    expect(machine.lastError).not.toContain("<");
  });

  it("malformed job views fail the attempts as the machine's fault, until --max-attempts is spent", async () => {
    const gw = await start((method, path) => {
      if (path === "/v1/health") return { body: healthyWorker() };
      if (method === "PUT" && path.startsWith("/v1/jobs/")) {
        const id = decodeURIComponent(path.slice("/v1/jobs/".length));
        // Progress as a sentence: the shape is right, one field is not.
        return {
          status: 201,
          body: {
            id,
            status: "running",
            progress: "half way",
            created_at: new Date().toISOString(),
            version: 1,
          },
        };
      }
      if (method === "HEAD") return { status: 200 };
      // The task's audio is sent before its job (the dispatcher knows no machine has it yet).
      if (method === "PUT" && path.startsWith("/v1/blobs/"))
        return { status: 201, body: { sha256: path.slice("/v1/blobs/".length), bytes: 1 } };
      return { status: 404, body: { error: "NOT_FOUND", message: "not here" } };
    });
    await until(() => gw.fleet.get("odd")?.state === "up");
    const audio = join(dir, "a.wav");
    const video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    const res = await fetch(`${gw.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    const { task_id } = (await res.json()) as { task_id: string };
    const task = await until(async () => {
      const t = await gw.store.getTask(task_id);
      return t?.status === "failed" && t;
    }, 20_000);
    expect(task).toMatchObject({ error_kind: "machine", attempts: 2 });
    expect(task.error_message).toMatch(/gave up after 2 attempts/);
    expect(task.error_message).toMatch(/not a worker's job view: \/progress: Expected integer/);
  });
});
