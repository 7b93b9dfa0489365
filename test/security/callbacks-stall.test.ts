import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { makeTaskInputs, submitTask, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

interface Delivery {
  state: string;
  tries: Array<{ http_status: number | null; error: string | null }>;
}

/**
 * Issue 9: one callback receiver that trickled its answer at 1 byte/s stopped every callback of
 * every task (13 minutes observed); the per-try timeout only fired between bytes. Now each try has
 * one deadline for the whole exchange, and other tasks' callbacks do not wait for it.
 */
describe("a callback receiver that trickles its answer", () => {
  let dir: string;
  let inputs: TaskInputs;
  let gateway: Started;
  let good: Receiver;
  let trickler: Server;
  let tricklerBase: string;
  /** What happened, in the order it happened, across both receivers. */
  const timeline: string[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    // The adversary, one byte every 100 ms for ever: of its headers (/headers), or of a chunked
    // body after a 200 (/body). Each byte restarts any timer that only watches for silence.
    trickler = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const kind = req.url === "/headers" ? "headers" : "body";
        timeline.push(`trickle-${kind}:start`);
        if (kind === "headers") req.socket.write("HTTP/1.1 200 OK\r\nx-pad: ");
        else res.writeHead(200);
        const drip = setInterval(() => (kind === "headers" ? req.socket.write(".") : res.write(".")), 100);
        req.socket.on("close", () => {
          clearInterval(drip);
          timeline.push(`trickle-${kind}:cut`);
        });
      });
    });
    await new Promise<void>((resolve) => trickler.listen(0, "127.0.0.1", resolve));
    tricklerBase = `http://127.0.0.1:${(trickler.address() as AddressInfo).port}`;
    good = await startReceiver();
    // The default --callback-timeout (10 s); no retry of the cut try within the test.
    gateway = await startGatewayProcess(["--data-dir", join(dir, "data"), "--callback-retry", "600000"], {
      cwd: dir,
    });
  });
  afterAll(async () => {
    await killAll();
    await good.close();
    trickler.closeAllConnections();
    await new Promise((resolve) => trickler.close(resolve));
    await removeDir(dir);
  });

  it("delays only its own task: another task's callbacks arrive meanwhile, and the stalled try is cut at the deadline", async () => {
    const stalledTasks: string[] = [];
    for (const kind of ["headers", "body"]) {
      const stalled = await submitTask(gateway.url, inputs, { callback_url: `${tricklerBase}/${kind}` });
      expect(stalled.status).toBe(200);
      stalledTasks.push(((await stalled.json()) as { task_id: string }).task_id);
    }
    await until(
      () => timeline.includes("trickle-headers:start") && timeline.includes("trickle-body:start"),
      30_000,
    );

    const fine = await submitTask(gateway.url, inputs, { callback_url: good.url });
    expect(fine.status).toBe(200);
    const fineTask = ((await fine.json()) as { task_id: string }).task_id;
    await until(
      () => good.received.some((r) => r.body.task_id === fineTask && r.body.status === "completed"),
      30_000,
    );
    timeline.push("good:completed");
    expect(good.received.map((r) => r.body.status)).toEqual(["pending", "processing", "completed"]);

    // Each stalled try ends at its deadline, with the reason, and is scheduled again.
    for (const [i, taskId] of stalledTasks.entries()) {
      const first = await until(async () => {
        const res = await fetch(`${gateway.url}/tasks/${taskId}/callbacks`);
        const { deliveries } = (await res.json()) as { deliveries: Delivery[] };
        return deliveries[0]?.tries.length ? deliveries[0] : undefined;
      }, 30_000);
      expect(first.state).toBe("pending");
      expect(first.tries).toHaveLength(1);
      expect(first.tries[0]?.error).toBe("no complete answer within 10000 ms (the delivery's deadline)");
      // The body trickler had answered 200 before it stalled: shown, but not counted as delivered.
      expect(first.tries[0]?.http_status).toBe(i === 0 ? null : 200);
    }
    await until(() => timeline.includes("trickle-headers:cut") && timeline.includes("trickle-body:cut"));
    // The good receiver had everything before either trickler was cut off.
    expect(timeline.indexOf("good:completed")).toBeLessThan(timeline.indexOf("trickle-headers:cut"));
    expect(timeline.indexOf("good:completed")).toBeLessThan(timeline.indexOf("trickle-body:cut"));
  });
});
