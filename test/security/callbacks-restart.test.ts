import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { killAll, startGatewayProcess } from "../helpers/processes.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { makeTaskInputs, submitTask, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

interface Delivery {
  webhook_id: string;
  state: string;
  next_try_at: string | null;
  tries: Array<{ http_status: number | null }>;
}

/**
 * Issue 9: a retry schedule that outlives a receiver's maintenance window, kept across restarts.
 * A delivery that failed is retried, with the same webhook-id, by the gateway that comes back
 * after a kill -9.
 */
describe("a callback retry across a gateway restart", () => {
  let dir: string;
  let inputs: TaskInputs;
  let receiver: Receiver;
  let receiverUp = false;

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    receiver = await startReceiver(() => (receiverUp ? 200 : 503));
  });
  afterAll(async () => {
    await killAll();
    await receiver.close();
    await removeDir(dir);
  });

  const deliveries = async (url: string, taskId: string) =>
    ((await (await fetch(`${url}/tasks/${taskId}/callbacks`)).json()) as { deliveries: Delivery[] })
      .deliveries;

  it("is made by the next gateway, with the same webhook-id", async () => {
    const args = ["--data-dir", join(dir, "data"), "--callback-retry", "3000"];
    const first = await startGatewayProcess(args, { cwd: dir });
    const res = await submitTask(first.url, inputs, { callback_url: receiver.url });
    const { task_id } = (await res.json()) as { task_id: string };
    const failed = await until(async () => {
      const [delivery] = await deliveries(first.url, task_id);
      return delivery?.tries.length === 1 && delivery;
    });
    expect(failed).toMatchObject({ state: "pending", tries: [{ http_status: 503 }] });
    expect(failed.next_try_at).not.toBeNull();
    await first.kill();

    receiverUp = true;
    const second = await startGatewayProcess(args, { cwd: dir });
    const delivered = await until(async () => {
      const [delivery] = await deliveries(second.url, task_id);
      return delivery?.state === "delivered" && delivery;
    }, 30_000);
    expect(delivered.webhook_id).toBe(failed.webhook_id);
    expect(delivered.tries.map((t) => t.http_status)).toEqual([503, 200]);
    const toFirst = receiver.received.filter((r) => r.headers["webhook-id"] === failed.webhook_id);
    expect(toFirst.map((r) => r.status)).toEqual([503, 200]);
    expect(toFirst.map((r) => r.body.status)).toEqual(["pending", "pending"]);
  });
});
