import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, type TestKey, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { filesUnder, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeNotMedia, makeVideo, probe } from "../helpers/media.js";
import { parseScrape, sampleValue } from "../helpers/prometheus.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

interface AvatarJson {
  avatar_id: string;
  name: string | null;
  sha256: string;
  bytes: number;
  duration: number;
  width: number;
  height: number;
  fps: number;
  owner: string | null;
  created_at: string;
  machines: string[];
}

interface TaskJson {
  task_id: string;
  status: string;
  avatar_id: string | null;
  error_message: string | null;
  files_deleted_at: string | null;
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

let fixtures: string;
let video: string;
let audio: string;
let audio2: string;
beforeAll(async () => {
  fixtures = await tempDir();
  video = join(fixtures, "lin.mp4");
  audio = join(fixtures, "hello.m4a");
  audio2 = join(fixtures, "bye.wav");
  await makeVideo(video, { seconds: 1, width: 320, height: 240, fps: 25 });
  await makeAudio(audio, { seconds: 1 });
  await makeAudio(audio2, { seconds: 1.5 });
  return () => removeDir(fixtures);
});

const createAvatar = async (
  gateway: Gateway,
  fields: Record<string, string | { path: string }> = { video: { path: video } },
  key?: TestKey,
) =>
  fetch(`${gateway.url}/avatars`, {
    method: "POST",
    ...(key ? { headers: bearer(key) } : {}),
    body: await taskForm(fields),
  });

const avatarTask = async (
  gateway: Gateway,
  avatarId: string,
  path = audio,
  key?: TestKey,
  route = "/tasks",
) =>
  fetch(`${gateway.url}${route}`, {
    method: "POST",
    ...(key ? { headers: bearer(key) } : {}),
    body: await taskForm({ audio: { path }, avatar_id: avatarId }),
  });

const blobExists = (gateway: Gateway, sha: string) =>
  stat(join(gateway.dataDir, "blobs", sha.slice(0, 2), sha)).then(
    () => true,
    () => false,
  );

describe("avatars on the embedded worker", () => {
  let gateway: Gateway;
  beforeAll(async () => {
    gateway = await startTestGateway({ maxUploadMb: "1" });
    return () => gateway.close();
  });

  it("creates, lists, gets and deletes an avatar; the same video twice shares one blob", async () => {
    const res = await createAvatar(gateway, { video: { path: video }, name: "Lin, studio" });
    expect(res.status).toBe(201);
    const first = (await res.json()) as AvatarJson;
    expect(first).toMatchObject({
      name: "Lin, studio",
      sha256: await sha256(video),
      bytes: (await stat(video)).size,
      width: 320,
      height: 240,
      fps: 25,
      owner: null,
      machines: ["embedded"],
    });
    expect(first.duration).toBeCloseTo(1, 1);
    const second = (await (await createAvatar(gateway)).json()) as AvatarJson;
    expect(second.avatar_id).not.toBe(first.avatar_id);
    expect(second.sha256).toBe(first.sha256);
    expect(second.name).toBeNull();

    const got = (await (await fetch(`${gateway.url}/avatars/${first.avatar_id}`)).json()) as AvatarJson;
    expect(got).toEqual(first);
    const list = (await (await fetch(`${gateway.url}/avatars?limit=1`)).json()) as {
      avatars: AvatarJson[];
      total: number;
    };
    expect(list.total).toBeGreaterThanOrEqual(2);
    expect(list.avatars.map((a) => a.avatar_id)).toEqual([second.avatar_id]);

    expect((await fetch(`${gateway.url}/avatars/${second.avatar_id}`, { method: "DELETE" })).status).toBe(
      204,
    );
    expect((await fetch(`${gateway.url}/avatars/${second.avatar_id}`)).status).toBe(404);
    // The other avatar still holds the shared video.
    expect(await blobExists(gateway, first.sha256)).toBe(true);
    expect((await fetch(`${gateway.url}/avatars/${first.avatar_id}`, { method: "DELETE" })).status).toBe(204);
    expect(await blobExists(gateway, first.sha256)).toBe(false);
    expect((await fetch(`${gateway.url}/avatars/${first.avatar_id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("refuses what a task's video would be refused for, leaving nothing on disk", async () => {
    const before = await filesUnder(join(gateway.dataDir, "blobs"));
    const notMedia = join(fixtures, "notes.mp4");
    await makeNotMedia(notMedia);
    const big = join(fixtures, "big.mp4");
    await writeFile(big, Buffer.alloc(1024 * 1024 + 10, 7));

    const cases: [Record<string, string | { path: string }>, number, string, string | undefined][] = [
      [{ name: "no video" }, 400, "MISSING_FIELD", "video"],
      [{ video: { path: audio } }, 400, "INVALID_MEDIA", "video"],
      [{ video: { path: notMedia } }, 400, "INVALID_MEDIA", "video"],
      [{ video: { path: big } }, 413, "FILE_TOO_LARGE", "video"],
      [{ video: { path: video }, warm: "maybe" }, 400, "INVALID_FIELD", "warm"],
      [{ video: { path: video }, audio: { path: audio } }, 400, "UNKNOWN_FIELD", "audio"],
    ];
    for (const [fields, status, error, field] of cases) {
      const res = await createAvatar(gateway, fields);
      const body = (await res.json()) as { error: string; field?: string };
      expect({ status: res.status, ...body }).toMatchObject({ status, error, field });
    }
    const json = await fetch(`${gateway.url}/avatars`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(json.status).toBe(415);
    expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual(before);
    expect(((await (await fetch(`${gateway.url}/avatars`)).json()) as { total: number }).total).toBe(0);
  });

  it("runs a task from avatar_id to a real MP4 without a video upload", async () => {
    const avatar = (await (await createAvatar(gateway)).json()) as AvatarJson;
    const scrape = async () => parseScrape(await (await fetch(`${gateway.url}/metrics`)).text());
    const videoBytes = async () =>
      sampleValue(await scrape(), "multi_heygem_upload_bytes_total", { field: "video" }) ?? 0;
    const audioBytes = async () =>
      sampleValue(await scrape(), "multi_heygem_upload_bytes_total", { field: "audio" }) ?? 0;
    const [videoBefore, audioBefore] = [await videoBytes(), await audioBytes()];

    const res = await avatarTask(gateway, avatar.avatar_id);
    expect(res.status).toBe(200);
    const task = (await res.json()) as TaskJson;
    expect(task.avatar_id).toBe(avatar.avatar_id);
    const done = await until(async () => {
      const t = (await (await fetch(`${gateway.url}/tasks/${task.task_id}`)).json()) as TaskJson;
      if (t.status === "failed") throw new Error(`task failed: ${t.error_message}`);
      return t.status === "completed" && t;
    }, 60_000);
    expect(done.avatar_id).toBe(avatar.avatar_id);
    const mp4 = join(fixtures, `${task.task_id}.mp4`);
    await writeFile(
      mp4,
      Buffer.from(await (await fetch(`${gateway.url}/tasks/${task.task_id}/result`)).arrayBuffer()),
    );
    const media = await probe(mp4);
    expect(media.video?.width).toBe(320);
    expect(media.audio).toBeDefined();
    expect(media.durationSec).toBeGreaterThan(0.5);
    expect(await videoBytes()).toBe(videoBefore);
    expect(await audioBytes()).toBe(audioBefore + (await stat(audio)).size);

    // /tasks/sync takes avatar_id too, and answers with the MP4.
    const sync = await avatarTask(gateway, avatar.avatar_id, audio2, undefined, "/tasks/sync");
    expect(sync.status).toBe(200);
    expect(sync.headers.get("content-type")).toBe("video/mp4");
    const syncMp4 = join(fixtures, "sync.mp4");
    await writeFile(syncMp4, Buffer.from(await sync.arrayBuffer()));
    expect((await probe(syncMp4)).durationSec).toBeGreaterThan(1);
    expect(await videoBytes()).toBe(videoBefore);
  }, 120_000);

  it("refuses a form with both a video and avatar_id, and an unknown avatar_id, naming the field", async () => {
    const avatar = (await (await createAvatar(gateway)).json()) as AvatarJson;
    const before = await filesUnder(join(gateway.dataDir, "blobs"));
    for (const order of ["avatar first", "video first"] as const) {
      const fields: Record<string, string | { path: string }> =
        order === "avatar first"
          ? { avatar_id: avatar.avatar_id, audio: { path: audio2 }, video: { path: video } }
          : { audio: { path: audio2 }, video: { path: video }, avatar_id: avatar.avatar_id };
      const res = await fetch(`${gateway.url}/tasks`, { method: "POST", body: await taskForm(fields) });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: "VIDEO_AND_AVATAR", field: "avatar_id" });
    }
    const unknown = await avatarTask(gateway, "8d1f0000-0000-4000-8000-000000000000", audio2);
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ error: "UNKNOWN_AVATAR", field: "avatar_id" });
    const neither = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: audio2 } }),
    });
    expect(await neither.json()).toMatchObject({ error: "MISSING_FIELD", field: "video" });
    expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual(before);
  });
});

describe("deleting an avatar a task uses", () => {
  it("is refused while the task is pending, allowed once it is cancelled", async () => {
    const dir = await tempDir();
    const machines = join(dir, "machines.json");
    // No machine: the task stays pending.
    await writeFile(machines, JSON.stringify({ machines: [] }));
    const gateway = await startTestGateway({ config: machines }, join(dir, "gateway"));
    try {
      const avatar = (await (await createAvatar(gateway)).json()) as AvatarJson;
      const task = (await (await avatarTask(gateway, avatar.avatar_id)).json()) as TaskJson;
      expect(task.status).toBe("pending");
      const refused = await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`, { method: "DELETE" });
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ error: "AVATAR_IN_USE" });
      expect(await blobExists(gateway, avatar.sha256)).toBe(true);

      await fetch(`${gateway.url}/tasks/${task.task_id}/cancel`, { method: "POST" });
      expect((await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`, { method: "DELETE" })).status).toBe(
        204,
      );
      // The cancelled task keeps its files (until --retention): the video stays for it.
      expect(await blobExists(gateway, avatar.sha256)).toBe(true);
      const kept = (await (await fetch(`${gateway.url}/tasks/${task.task_id}`)).json()) as TaskJson;
      expect(kept.avatar_id).toBe(avatar.avatar_id);
      // Deleting the last task that needs it releases it.
      expect((await fetch(`${gateway.url}/tasks/${task.task_id}`, { method: "DELETE" })).status).toBe(204);
      expect(await blobExists(gateway, avatar.sha256)).toBe(false);
      // A new task cannot name the deleted avatar.
      const late = await avatarTask(gateway, avatar.avatar_id);
      expect(await late.json()).toMatchObject({ error: "UNKNOWN_AVATAR", field: "avatar_id" });
    } finally {
      await gateway.close();
      await removeDir(dir);
    }
  });
});

describe("avatars and API keys", () => {
  const shop = testKey("shop", "submit");
  const other = testKey("other", "submit");
  const boss = testKey("boss", "admin");
  let dir: string;
  let gateway: Gateway;
  beforeAll(async () => {
    dir = await tempDir();
    const machines = join(dir, "machines.json");
    await writeFile(machines, JSON.stringify({ machines: [] }));
    await writeKeysFile(join(dir, "keys.json"), [shop, other, boss]);
    gateway = await startTestGateway({ config: machines, apiKeys: join(dir, "keys.json") }, join(dir, "gw"));
  });
  afterAll(async () => {
    await gateway?.close();
    await removeDir(dir);
  });

  it("lets a submit key see and use only its own avatars; an admin key sees all", async () => {
    expect((await createAvatar(gateway)).status).toBe(401);
    const mine = (await (await createAvatar(gateway, undefined, shop)).json()) as AvatarJson;
    expect(mine.owner).toBe("shop");
    const get = (key: TestKey, path = `/avatars/${mine.avatar_id}`, init: RequestInit = {}) =>
      fetch(`${gateway.url}${path}`, { ...init, headers: bearer(key) });

    expect((await get(other)).status).toBe(404);
    expect((await get(other, "/avatars").then((r) => r.json())) as unknown).toMatchObject({ total: 0 });
    expect((await get(other, `/avatars/${mine.avatar_id}/warm`, { method: "POST" })).status).toBe(404);
    expect((await get(other, `/avatars/${mine.avatar_id}`, { method: "DELETE" })).status).toBe(404);
    const stolen = await avatarTask(gateway, mine.avatar_id, audio, other);
    expect(stolen.status).toBe(400);
    expect(await stolen.json()).toMatchObject({ error: "UNKNOWN_AVATAR", field: "avatar_id" });

    expect((await get(shop)).status).toBe(200);
    expect((await get(boss)).status).toBe(200);
    expect((await get(boss, "/avatars").then((r) => r.json())) as unknown).toMatchObject({ total: 1 });
    const task = await avatarTask(gateway, mine.avatar_id, audio, shop);
    expect(task.status).toBe(200);
    expect(((await task.json()) as TaskJson).avatar_id).toBe(mine.avatar_id);
  });
});

describe("avatars under --retention", () => {
  it("keeps the avatar's video while its tasks' files expire; deleting the avatar then frees it", async () => {
    const gateway = await startTestGateway({ retention: "1s", retentionRows: "1h" });
    try {
      const avatar = (await (await createAvatar(gateway)).json()) as AvatarJson;
      const ids: string[] = [];
      for (const file of [audio, audio2]) {
        ids.push(((await (await avatarTask(gateway, avatar.avatar_id, file)).json()) as TaskJson).task_id);
      }
      for (const id of ids) {
        const expired = await until(
          async () => {
            const t = (await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as TaskJson;
            if (t.status === "failed") throw new Error(`task failed: ${t.error_message}`);
            return t.files_deleted_at !== null && t;
          },
          60_000,
          { what: "files expired" },
        );
        expect(expired.status).toBe("completed");
      }
      const audioSha = await sha256(audio);
      await until(async () => !(await blobExists(gateway, audioSha)), 10_000, { what: "audio deleted" });
      expect(await blobExists(gateway, avatar.sha256)).toBe(true);

      expect((await fetch(`${gateway.url}/avatars/${avatar.avatar_id}`, { method: "DELETE" })).status).toBe(
        204,
      );
      expect(await blobExists(gateway, avatar.sha256)).toBe(false);
    } finally {
      await gateway.close();
    }
  }, 120_000);
});
