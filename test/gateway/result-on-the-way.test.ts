import { writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEngine } from "../../src/engines/registry.js";
import { createLogger } from "../../src/logger.js";
import { startWorker } from "../../src/worker/agent.js";
import { getTask } from "../helpers/fleet.js";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeTaskInputs, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

/**
 * A task's result on its way home from the machine, held or damaged by a proxy in between: what
 * the gateway does with the task then.
 */

let fixtures: string;
let inputs: TaskInputs;
beforeAll(async () => {
  fixtures = await tempDir();
  inputs = await makeTaskInputs(fixtures);
  return () => removeDir(fixtures);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A gate a test opens: what waits on `passed` goes on once `open()` was called. */
function gate() {
  let open: () => void = () => undefined;
  const passed = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, passed };
}

interface ResultProxy {
  readonly port: number;
  /** Result downloads, in order: how many bytes each had, and how many the proxy passed on. */
  readonly results: { total: number; sent: number }[];
  /** Result downloads stop after half their bytes until this opens (and go on after it). */
  readonly halfway: ReturnType<typeof gate>;
}

/**
 * An HTTP proxy in front of a worker that holds every result download after half its bytes until
 * `halfway` opens, and with `damageFirst` changes one byte of the first result's second half: a
 * result damaged on the way.
 */
async function startResultProxy(targetPort: number, options: { damageFirst?: boolean } = {}) {
  const results: { total: number; sent: number }[] = [];
  const halfway = gate();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const upstream = httpRequest(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (
          !(req.method === "GET" && /^\/v1\/jobs\/[^/]+\/result$/.test(path) && answer.statusCode === 200)
        ) {
          answer.pipe(res);
          return;
        }
        const total = Number(answer.headers["content-length"]);
        const record = { total, sent: 0 };
        const damage = options.damageFirst === true && results.length === 0;
        results.push(record);
        void (async () => {
          const half = Math.floor(total / 2);
          for await (const chunk of answer) {
            const piece = Buffer.from(chunk as Buffer);
            // Held once the half is reached: what is past it waits for the gate.
            if (record.sent + piece.length > half) {
              const before = half - record.sent;
              if (before > 0) {
                res.write(piece.subarray(0, before));
                record.sent += before;
              }
              await halfway.passed;
              const rest = piece.subarray(Math.max(0, before));
              if (damage && rest.length > 0) rest[0] = (rest[0] ?? 0) ^ 0xff;
              res.write(rest);
              record.sent += rest.length;
            } else {
              res.write(piece);
              record.sent += piece.length;
            }
          }
          res.end();
        })().catch(() => res.destroy());
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 72_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const proxy: ResultProxy = { port: (server.address() as AddressInfo).port, results, halfway };
  return proxy;
}

/** A gateway whose one machine, an ffmpeg worker in this process, is reached through the proxy. */
async function gatewayBehindProxy(options: { damageFirst?: boolean } = {}) {
  const dir = await tempDir();
  cleanups.push(() => removeDir(dir));
  const logger = createLogger({ level: "silent", format: "json" });
  const engine = createEngine("ffmpeg", { maxConcurrent: 1, logger });
  const worker = await startWorker({
    host: "127.0.0.1",
    port: 0,
    dataDir: join(dir, "worker"),
    engine,
    logger,
  });
  cleanups.push(async () => {
    await worker.close();
    await engine.close?.();
  });
  const proxy = await startResultProxy(worker.port, options);
  const machines = join(dir, "machines.json");
  await writeFile(
    machines,
    JSON.stringify({ machines: [{ name: "gpu", host: "127.0.0.1", port: proxy.port, max_concurrent: 1 }] }),
  );
  const gateway = await startTestGateway({ config: machines, maxAttempts: "2" }, join(dir, "gateway"));
  cleanups.push(() => gateway.close());
  await until(() => gateway.fleet.get("gpu")?.state === "up");
  return { dir, proxy, gateway };
}

describe("a result damaged on its way home", () => {
  it("sends its task to the machine again at once, on a fleet with nothing else to do", async () => {
    const { proxy, gateway } = await gatewayBehindProxy({ damageFirst: true });
    proxy.halfway.open();
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: inputs.audio }, video: { path: inputs.video } }),
    });
    const { task_id } = (await res.json()) as { task_id: string };
    // Before, the task went back to pending and stayed there until another task or a machine's
    // change woke the placement: the slot had been given back before the result came home.
    const done = await until(async () => {
      const t = await getTask(gateway.url, task_id);
      return t.status === "completed" && t;
    });
    expect(done.attempts).toBe(2);
    expect(proxy.results).toHaveLength(2);
  }, 60_000);
});
