import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, run, type Started, startGatewayProcess } from "../helpers/processes.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { makeTaskInputs, submitTask, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

/**
 * Issue 9, "callbacks that can be trusted": Standard Webhooks signatures with --callback-secret,
 * checked by the README's own verification snippets (TypeScript, and Python when python3 is
 * there), a webhook-id kept across retries, result_url from --public-url, and redelivery.
 */

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The README's fenced code block in `language` that contains `marker`. */
function readmeSnippet(language: string, marker: string): string {
  const blocks = [...README.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, "g"))].map(
    (m) => m[1] ?? "",
  );
  const block = blocks.find((b) => b.includes(marker));
  if (!block) throw new Error(`README has no ${language} block with ${marker}`);
  return block;
}

type Verify = (
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
) => boolean;

const hasPython = spawnSync("python3", ["--version"]).status === 0;

describe("signed callbacks", () => {
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const publicUrl = "https://lipsync.example.test:8443";
  let dir: string;
  let inputs: TaskInputs;
  let gateway: Started;
  let receiver: Receiver;
  let verify: Verify;

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    // The first try fails, so the first delivery is tried twice.
    receiver = await startReceiver((n) => (n === 0 ? 500 : 200));
    gateway = await startGatewayProcess(
      [
        "--data-dir",
        join(dir, "data"),
        "--callback-secret",
        secret,
        "--public-url",
        `${publicUrl}/`,
        "--callback-retry",
        "50",
      ],
      { cwd: dir },
    );
    // The README's TypeScript snippet, compiled as a user would, and imported.
    const js = ts.transpileModule(readmeSnippet("ts", "export function verifyCallback"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = join(dir, "verify-callback.mjs");
    await writeFile(file, js);
    verify = ((await import(pathToFileURL(file).href)) as { verifyCallback: Verify }).verifyCallback;
  });
  afterAll(async () => {
    await killAll();
    await receiver.close();
    await removeDir(dir);
  });

  it("says at start-up that callbacks are signed", () => {
    expect(gateway.lines.some((line) => line.includes("callbacks are signed"))).toBe(true);
    expect(gateway.lines.join("\n")).not.toContain(secret);
  });

  it("signs every try; the README's TypeScript snippet verifies them and refuses a forgery", async () => {
    const res = await submitTask(gateway.url, inputs, { callback_url: receiver.url });
    const { task_id } = (await res.json()) as { task_id: string };
    await until(() => receiver.received.filter((r) => r.status === 200).length >= 3, 30_000);
    const received = receiver.received;
    for (const r of received) {
      expect(r.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      expect(r.headers["webhook-timestamp"]).toMatch(/^\d+$/);
      expect(verify(secret, r.headers, r.raw)).toBe(true);
      expect(verify(secret, r.headers, r.raw.replace(task_id, "00000000-0000-0000-0000-000000000000"))).toBe(
        false,
      );
      expect(verify(`whsec_${randomBytes(32).toString("base64")}`, r.headers, r.raw)).toBe(false);
    }
    // The failed try and its retry are one delivery: one webhook-id; each delivery has its own.
    const ids = received.map((r) => r.headers["webhook-id"]);
    expect(ids[0]).toBe(ids[1]);
    expect(new Set(ids).size).toBe(3);
    expect(received.map((r) => r.body.status)).toEqual(["pending", "pending", "processing", "completed"]);
    // The MP4's address as receivers reach it.
    const completed = received.at(-1)?.body;
    expect(completed?.result_url).toBe(`${publicUrl}/tasks/${task_id}/result`);
  });

  it("the README's Python snippet verifies them too", async (ctx) => {
    if (!hasPython) {
      process.stderr.write("skipped: no python3 to run the README's Python verification snippet\n");
      ctx.skip();
      return;
    }
    const script = join(dir, "verify_callback.py");
    await writeFile(
      script,
      `${readmeSnippet("python", "def verify_callback")}
import json, sys
secret, cases = json.load(open(sys.argv[1]))
print(json.dumps([verify_callback(secret, headers, body.encode()) for headers, body in cases]))
`,
    );
    const cases = receiver.received.flatMap((r) => [
      [r.headers, r.raw],
      [r.headers, `${r.raw} `],
    ]);
    const input = join(dir, "cases.json");
    await writeFile(input, JSON.stringify([secret, cases]));
    const out = await run("python3", [script, input]);
    expect(out.stderr).toBe("");
    expect(JSON.parse(out.stdout)).toEqual(cases.map((_, i) => i % 2 === 0));
  });

  it("redelivers the latest status as a new delivery, signed, with a new webhook-id", async () => {
    const taskId = receiver.received.at(-1)?.body.task_id as string;
    const before = receiver.received.length;
    const res = await fetch(`${gateway.url}/tasks/${taskId}/callbacks/redeliver`, { method: "POST" });
    expect(res.status).toBe(202);
    const delivery = (await res.json()) as { webhook_id: string; status: string; state: string };
    expect(delivery).toMatchObject({ status: "completed", state: "pending" });
    await until(() => receiver.received.length > before);
    const again = receiver.received[before];
    expect(again?.headers["webhook-id"]).toBe(delivery.webhook_id);
    expect(receiver.received.slice(0, before).map((r) => r.headers["webhook-id"])).not.toContain(
      delivery.webhook_id,
    );
    expect(again?.body).toMatchObject({ task_id: taskId, status: "completed" });
    expect(again && verify(secret, again.headers, again.raw)).toBe(true);

    const listed = (await (await fetch(`${gateway.url}/tasks/${taskId}/callbacks`)).json()) as {
      deliveries: Array<{ webhook_id: string; state: string; tries: Array<{ http_status: number | null }> }>;
    };
    await until(async () => {
      const now = (await (await fetch(`${gateway.url}/tasks/${taskId}/callbacks`)).json()) as typeof listed;
      return now.deliveries.at(-1)?.state === "delivered";
    });
    expect(listed.deliveries).toHaveLength(4);
    expect(listed.deliveries[0]?.tries.map((t) => t.http_status)).toEqual([500, 200]);
  });

  it("redelivery answers 404 for an unknown task and 409 for a task without a callback_url", async () => {
    const unknown = await fetch(
      `${gateway.url}/tasks/00000000-0000-0000-0000-000000000000/callbacks/redeliver`,
      {
        method: "POST",
      },
    );
    expect(unknown.status).toBe(404);
    const plain = (await (await submitTask(gateway.url, inputs)).json()) as { task_id: string };
    const res = await fetch(`${gateway.url}/tasks/${plain.task_id}/callbacks/redeliver`, { method: "POST" });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: "NO_CALLBACK_URL" });
  });
});

describe("the callback secret at start-up", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("a malformed secret stops the start with one line that does not repeat it", async () => {
    const bad = "whsec_dG9vLXNob3J0";
    const res = await run(process.execPath, [
      CLI,
      "gateway",
      "--port",
      "0",
      "--data-dir",
      join(dir, "data"),
      "--callback-secret",
      bad,
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split("\n")).toHaveLength(1);
    expect(res.stderr).toMatch(
      /--callback-secret: the value is not whsec_ followed by base64 of 24 to 64 random bytes/,
    );
    expect(res.stderr).not.toContain(bad);
  });

  it("without a secret, callbacks go out unsigned and the start-up log says so", async () => {
    const gateway = await startGatewayProcess(["--data-dir", join(dir, "data2")], { cwd: dir });
    const line = gateway.lines.find((l) => l.includes("callbacks are NOT signed"));
    expect(line).toBeDefined();
    expect(JSON.parse(line ?? "{}")).toMatchObject({ level: 40 });
  });
});
