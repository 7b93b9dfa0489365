import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

interface TaskJson {
  task_id: string;
  status: string;
  files_deleted_at: string | null;
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

/** Issue 10: `DELETE /tasks/{id}` and `--retention`, through the API a client uses. */
describe("deleting tasks and their files", () => {
  let dir: string;
  let gateway: Gateway;
  let template: string;
  let ownAudio: string;
  let sharedAudio: string;
  const shop = testKey("shop", "submit");
  const other = testKey("other", "submit");
  const boss = testKey("boss", "admin");

  beforeAll(async () => {
    dir = await tempDir();
    template = join(dir, "template.mp4");
    ownAudio = join(dir, "own.wav");
    sharedAudio = join(dir, "shared.wav");
    await makeVideo(template, { seconds: 1 });
    await makeAudio(ownAudio, { seconds: 2 });
    await makeAudio(sharedAudio, { seconds: 1 });
    await writeKeysFile(join(dir, "keys.json"), [shop, other, boss]);
    gateway = await startTestGateway({ apiKeys: join(dir, "keys.json") });
  });
  afterAll(async () => {
    await gateway?.close();
    await removeDir(dir);
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${gateway.url}${path}`, init);
  const blobFile = (sha: string) => join(gateway.dataDir, "blobs", sha.slice(0, 2), sha);
  const exists = (sha: string) =>
    readFile(blobFile(sha)).then(
      () => true,
      () => false,
    );
  const create = async (audio: string, key = shop): Promise<string> => {
    const res = await call("/tasks", {
      method: "POST",
      headers: bearer(key),
      body: await taskForm({ audio: { path: audio }, video: { path: template } }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return ((await res.json()) as TaskJson).task_id;
  };
  const task = async (id: string, key = shop) =>
    (await (await call(`/tasks/${id}`, { headers: bearer(key) })).json()) as TaskJson;
  const completed = (id: string) =>
    until(async () => (await task(id)).status === "completed", 60_000, { what: `${id} completed` });

  it("deletes a finished task and its own files, keeps what another task uses, refuses a live one", async () => {
    const mine = await create(ownAudio);
    const kept = await create(sharedAudio);
    await completed(mine);
    await completed(kept);
    const row = await gateway.store.getTask(mine);
    const keptRow = await gateway.store.getTask(kept);
    if (!row?.result_sha256 || !keptRow?.result_sha256) throw new Error("no results");
    expect(row.result_sha256).not.toBe(keptRow.result_sha256);

    // A live task on the same template: drain the only machine so it stays pending.
    expect((await call("/machines/embedded/drain", { method: "POST", headers: bearer(boss) })).status).toBe(
      200,
    );
    const live = await create(sharedAudio);
    expect((await task(live)).status).toBe("pending");

    const refused = await call(`/tasks/${live}`, { method: "DELETE", headers: bearer(shop) });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: string }).error).toBe("TASK_NOT_FINISHED");

    const stranger = await call(`/tasks/${mine}`, { method: "DELETE", headers: bearer(other) });
    expect(stranger.status).toBe(404);

    const deleted = await call(`/tasks/${mine}`, { method: "DELETE", headers: bearer(shop) });
    expect(deleted.status).toBe(204);
    expect(await deleted.text()).toBe("");
    expect((await call(`/tasks/${mine}`, { headers: bearer(shop) })).status).toBe(404);
    expect((await call(`/tasks/${mine}`, { method: "DELETE", headers: bearer(shop) })).status).toBe(404);

    expect(await exists(row.audio_sha256)).toBe(false);
    expect(await exists(row.result_sha256)).toBe(false);
    expect(await exists(await sha256(template))).toBe(true);
    expect(await exists(keptRow.audio_sha256)).toBe(true);
    expect(await exists(keptRow.result_sha256)).toBe(true);
    expect((await call(`/tasks/${kept}/result`, { headers: bearer(shop) })).status).toBe(200);

    // An admin may delete anyone's finished task.
    const theirs = await create(sharedAudio, other);
    expect((await call(`/tasks/${theirs}`, { method: "DELETE", headers: bearer(boss) })).status).toBe(409);
    expect((await call("/machines/embedded/resume", { method: "POST", headers: bearer(boss) })).status).toBe(
      200,
    );
    await until(async () => (await task(theirs, other)).status === "completed", 60_000);
    expect((await call(`/tasks/${theirs}`, { method: "DELETE", headers: bearer(boss) })).status).toBe(204);
  });

  it("documents the route and the 410 in the OpenAPI document", async () => {
    const doc = (await (await call("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const del = doc.paths["/tasks/{task_id}"]?.delete;
    expect(Object.keys(del?.responses ?? {})).toEqual(expect.arrayContaining(["204", "404", "409"]));
    expect(Object.keys(doc.paths["/tasks/{task_id}/result"]?.get?.responses ?? {})).toContain("410");
  });
});

describe("--retention", () => {
  let dir: string;
  let gateway: Gateway;

  beforeAll(async () => {
    dir = await tempDir();
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    gateway = await startTestGateway({ retention: "1s", retentionRows: "1h" });
  });
  afterAll(async () => {
    await gateway?.close();
    await removeDir(dir);
  });

  it("deletes a finished task's files after it; the task says so and its result answers 410", async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    const { task_id } = (await res.json()) as TaskJson;
    const expired = await until(
      async () => {
        const t = (await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as TaskJson;
        return t.files_deleted_at !== null && t;
      },
      60_000,
      { what: "files deleted" },
    );
    expect(expired.status).toBe("completed");
    const result = await fetch(`${gateway.url}/tasks/${task_id}/result`);
    expect(result.status).toBe(410);
    expect(((await result.json()) as { error: string }).error).toBe("RESULT_EXPIRED");
    const row = await gateway.store.getTask(task_id);
    const files = [row?.audio_sha256, row?.video_sha256, row?.result_sha256].map((sha) =>
      join(gateway.dataDir, "blobs", sha?.slice(0, 2) ?? "", sha ?? ""),
    );
    // The row is marked in the sweep's transaction; the files go right after it commits.
    await until(
      async () => {
        const left = await Promise.all(
          files.map((f) =>
            readFile(f).then(
              () => f,
              () => undefined,
            ),
          ),
        );
        return left.every((f) => f === undefined);
      },
      10_000,
      { what: "files gone" },
    );
  });

  it("refuses --retention-rows shorter than --retention, naming both", async () => {
    await expect(startTestGateway({ retention: "7d", retentionRows: "1d" })).rejects.toThrow(
      /--retention-rows.*1d is shorter than --retention \(7d\)/,
    );
  });
});
