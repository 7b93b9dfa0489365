import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { filesUnder, removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";

/**
 * Issue 9, "API keys": a gateway process with a keys file, probed as each kind of caller would.
 * Without a key: 401; wrong role: 403; another key's task: 404, exactly like an unknown id.
 */
describe("API keys and roles", () => {
  let dir: string;
  let gateway: Started;
  let audio: string;
  let video: string;
  const shop = testKey("shop", "submit");
  const other = testKey("other-shop", "submit");
  const boss = testKey("boss", "admin");

  beforeAll(async () => {
    dir = await tempDir();
    audio = join(dir, "a.wav");
    video = join(dir, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    await writeKeysFile(join(dir, "keys.json"), [shop, other, boss]);
    gateway = await startGatewayProcess(
      ["--data-dir", join(dir, "data"), "--api-keys", join(dir, "keys.json")],
      {
        cwd: dir,
      },
    );
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${gateway.url}${path}`, init);
  const create = async (key: typeof shop, extra: Record<string, string> = {}) =>
    call("/tasks", {
      method: "POST",
      headers: bearer(key),
      body: await taskForm({ audio: { path: audio }, video: { path: video }, ...extra }),
    });
  const createId = async (key: typeof shop) => {
    const res = await create(key);
    expect(res.status, await res.clone().text()).toBe(200);
    return ((await res.json()) as { task_id: string; owner: string }).task_id;
  };

  it("leaves /healthz and /readyz open to probes, and keeps /metrics for admin keys", async () => {
    expect((await call("/healthz")).status).toBe(200);
    expect([200, 503]).toContain((await call("/readyz")).status);
    expect((await call("/metrics")).status).toBe(401);
    expect((await call("/metrics", { headers: bearer(shop) })).status).toBe(403);
    const scraped = await call("/metrics", { headers: bearer(boss) });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain("multi_heygem_queue_depth");
  });

  it("answers 401 with WWW-Authenticate to a request without a key, and changes nothing", async () => {
    const res = await call("/tasks", {
      method: "POST",
      body: await taskForm({ audio: { path: audio }, video: { path: video } }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect(await res.json()).toEqual({
      error: "UNAUTHORIZED",
      message: "this gateway needs an API key: send Authorization: Bearer <key>",
    });
    const list = await call("/tasks", { headers: bearer(boss) });
    expect(((await list.json()) as { total: number }).total).toBe(0);
    expect(await filesUnder(join(dir, "data", "blobs"))).toEqual([]);
  });

  it("tells an unknown key from a missing one", async () => {
    for (const header of ["Bearer mhk_not_a_key", `Bearer ${shop.key}x`]) {
      const res = await call("/tasks", { headers: { authorization: header } });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
      expect(((await res.json()) as { error: string }).error).toBe("INVALID_API_KEY");
    }
    for (const header of ["", "Basic c2hvcDpwdw==", "Bearer"]) {
      const res = await call("/tasks/00000000-0000-0000-0000-000000000000", {
        headers: { authorization: header },
      });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: string }).error).toBe("UNAUTHORIZED");
    }
  });

  it("leaves /, /docs and /openapi.json open", async () => {
    expect((await call("/")).status).toBe(200);
    expect((await call("/openapi.json")).status).toBe(200);
    expect((await call("/docs", { redirect: "follow" })).status).toBe(200);
  });

  it("a submit key sees its own tasks only; another key's task is a 404 like an unknown id", async () => {
    const mine = await createId(shop);
    const theirs = await createId(other);

    const list = (await (await call("/tasks", { headers: bearer(shop) })).json()) as {
      tasks: { task_id: string; owner: string }[];
      total: number;
    };
    expect(list.tasks.map((t) => t.task_id)).toEqual([mine]);
    expect(list.total).toBe(1);
    expect(list.tasks[0]?.owner).toBe("shop");

    const unknown = "00000000-0000-0000-0000-000000000000";
    for (const suffix of ["", "/events", "/result"]) {
      const res = await call(`/tasks/${theirs}${suffix}`, { headers: bearer(shop) });
      expect(res.status, suffix).toBe(404);
      const body = (await res.json()) as { error: string; message: string };
      const none = (await (await call(`/tasks/${unknown}${suffix}`, { headers: bearer(shop) })).json()) as {
        error: string;
        message: string;
      };
      expect(body.error).toBe(none.error);
      expect(body.message).toBe(none.message.replace(unknown, theirs));
    }
    const head = await call(`/tasks/${theirs}/result`, { method: "HEAD", headers: bearer(shop) });
    expect(head.status).toBe(404);
    expect((await call(`/tasks/${mine}`, { headers: bearer(shop) })).status).toBe(200);

    // An admin key sees everyone's.
    const all = (await (await call("/tasks", { headers: bearer(boss) })).json()) as { total: number };
    expect(all.total).toBeGreaterThanOrEqual(2);
    expect((await call(`/tasks/${theirs}/events`, { headers: bearer(boss) })).status).toBe(200);
  });

  it("a submit key may not see or drain machines (403); an admin key may", async () => {
    const list = await call("/machines", { headers: bearer(shop) });
    expect(list.status).toBe(403);
    expect(((await list.json()) as { error: string }).error).toBe("FORBIDDEN");

    const drain = await call("/machines/embedded/drain", { method: "POST", headers: bearer(shop) });
    expect(drain.status).toBe(403);
    expect(await drain.json()).toEqual({
      error: "FORBIDDEN",
      message: 'the key "shop" has the role submit; this needs an admin key',
    });
    const noKey = await call("/machines/embedded/drain", { method: "POST" });
    expect(noKey.status).toBe(401);

    const machines = async () =>
      (
        (await (await call("/machines", { headers: bearer(boss) })).json()) as {
          machines: { name: string; draining: boolean }[];
        }
      ).machines;
    expect((await machines()).find((m) => m.name === "embedded")?.draining).toBe(false);

    const drained = await call("/machines/embedded/drain", { method: "POST", headers: bearer(boss) });
    expect(drained.status).toBe(200);
    expect((await machines()).find((m) => m.name === "embedded")?.draining).toBe(true);
    expect((await call("/machines/embedded/resume", { method: "POST", headers: bearer(boss) })).status).toBe(
      200,
    );
  });

  it("bounds a submit key's priority (403 naming the field, nothing stored); an admin key is not bounded", async () => {
    const before = ((await (await call("/tasks", { headers: bearer(boss) })).json()) as { total: number })
      .total;
    const blobsBefore = await filesUnder(join(dir, "data", "blobs"));
    const res = await create(shop, { priority: "11" });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: "PRIORITY_NOT_ALLOWED", field: "priority" });
    const after = ((await (await call("/tasks", { headers: bearer(boss) })).json()) as { total: number })
      .total;
    expect(after).toBe(before);
    expect(await filesUnder(join(dir, "data", "blobs"))).toEqual(blobsBefore);

    expect((await create(shop, { priority: "10" })).status).toBe(200);
    const urgent = await create(boss, { priority: "1000" });
    expect(urgent.status).toBe(200);
    expect(((await urgent.json()) as { priority: number; owner: string }).owner).toBe("boss");
  });

  it("the typed client takes a key and runs a task end to end with it", async () => {
    const client = new Client({ url: gateway.url, apiKey: shop.key });
    const task = await client.createTask({ audio, video });
    const done = await client.waitFor(task.task_id);
    expect(done.status).toBe("completed");
    const out = join(dir, "out.mp4");
    await client.saveResult(done.task_id, out);
    expect(await filesUnder(dir)).toContain("out.mp4");
    const keyless = new Client({ url: gateway.url });
    await expect(keyless.getTask(task.task_id)).rejects.toMatchObject({ status: 401, code: "UNAUTHORIZED" });
  });
});
