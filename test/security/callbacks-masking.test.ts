import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { makeTaskInputs, submitTask, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

/**
 * Issue 9: anyone could read every task's `callback_url`, with any credentials in it. The
 * credentials and the query string are masked in every response and log line; the receiver still
 * gets them (as Basic authentication and the query).
 */
describe("a callback_url with credentials and a token in its query", () => {
  const SECRET_PASS = "s3cr3t-pass";
  const SECRET_TOKEN = "t0p-s3cr3t";
  let dir: string;
  let inputs: TaskInputs;
  let gateway: Started;
  let receiver: Receiver;
  let callbackUrl: string;
  let masked: string;
  let taskId: string;

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    // The first try fails, so a retry is logged too.
    receiver = await startReceiver((n) => (n === 0 ? 500 : 200));
    const { host } = new URL(receiver.url);
    callbackUrl = `http://hookuser:${SECRET_PASS}@${host}/hook?token=${SECRET_TOKEN}`;
    masked = `http://***@${host}/hook?***`;
    gateway = await startGatewayProcess(["--data-dir", join(dir, "data"), "--callback-retry", "50"], {
      cwd: dir,
      env: { MULTI_HEYGEM_LOG_LEVEL: "debug" },
    });
    const res = await submitTask(gateway.url, inputs, { callback_url: callbackUrl });
    expect(res.status).toBe(200);
    const created = await res.text();
    expect(created).not.toContain(SECRET_PASS);
    taskId = (JSON.parse(created) as { task_id: string }).task_id;
    await until(() => receiver.received.filter((r) => r.status === 200).length >= 3, 30_000);
  });
  afterAll(async () => {
    await killAll();
    await receiver.close();
    await removeDir(dir);
  });

  it("reaches the receiver whole: credentials as Basic authentication, the query as it was", () => {
    const basic = `Basic ${Buffer.from(`hookuser:${SECRET_PASS}`).toString("base64")}`;
    for (const r of receiver.received) {
      expect(r.headers.authorization).toBe(basic);
      expect(r.url).toBe(`/hook?token=${SECRET_TOKEN}`);
    }
  });

  it("is masked in every response about the task", async () => {
    const task = await (await fetch(`${gateway.url}/tasks/${taskId}`)).json();
    expect(task).toMatchObject({ callback_url: masked });
    for (const path of [
      `/tasks/${taskId}`,
      "/tasks",
      `/tasks/${taskId}/events`,
      `/tasks/${taskId}/callbacks`,
    ]) {
      const text = await (await fetch(`${gateway.url}${path}`)).text();
      expect(text, path).not.toContain(SECRET_PASS);
      expect(text, path).not.toContain(SECRET_TOKEN);
    }
    const listed = (await (await fetch(`${gateway.url}/tasks/${taskId}/callbacks`)).json()) as {
      callback_url: string;
    };
    expect(listed.callback_url).toBe(masked);
  });

  it("is masked in every log line, and the log still tells which receiver it was", async () => {
    await until(() => gateway.lines.some((line) => line.includes("callback delivered")));
    const log = gateway.lines.join("\n");
    expect(log).not.toContain(SECRET_PASS);
    expect(log).not.toContain(SECRET_TOKEN);
    expect(log).toContain(masked);
    expect(log).toContain("callback failed; will retry");
  });

  it("is not echoed when refused at submit", async () => {
    const res = await submitTask(gateway.url, inputs, {
      callback_url: `http://admin:${SECRET_PASS}@169.254.169.254/latest?token=${SECRET_TOKEN}`,
    });
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text).not.toContain(SECRET_PASS);
    expect(text).not.toContain(SECRET_TOKEN);
    expect(gateway.lines.join("\n")).not.toContain(SECRET_PASS);
  });
});
