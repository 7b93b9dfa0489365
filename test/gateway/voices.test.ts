import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { HeygemEngine } from "../../src/engines/heygem/heygem-engine.js";
import { createSpeaker } from "../../src/engines/speech/speakers.js";
import { startWorker } from "../../src/worker/agent.js";
import { FAST } from "../engines/heygem/harness.js";
import { bearer, type TestKey, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { filesUnder, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { HeygemEmulator } from "../helpers/heygem-emulator.js";
import { makeAudio, makeNotMedia, makeSilentAudio, makeVideo } from "../helpers/media.js";
import { newTask, openTestStore } from "../helpers/store.js";
import { TtsEmulator } from "../helpers/tts-emulator.js";
import { until } from "../helpers/until.js";
import { silentLogger } from "../worker/harness.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

interface VoiceJson {
  voice_id: string;
  name: string | null;
  lang: string;
  sha256: string;
  bytes: number;
  duration: number;
  reference_text: string | null;
  avatar_id: string | null;
  owner: string | null;
  created_at: string;
}

const sha256 = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

const shop = testKey("shop", "submit");
const other = testKey("other", "submit");
const boss = testKey("boss", "admin");

/**
 * Issue 12, "Voices": two GPU machines, each a real worker agent in front of a HeyGem emulator
 * and a fish-speech emulator, behind a gateway with API keys.
 */
describe("voices on machines with fish-speech", () => {
  let dir: string;
  let gateway: Gateway;
  const tts: Record<"a" | "b", TtsEmulator> = {} as Record<"a" | "b", TtsEmulator>;
  const stops: (() => Promise<void>)[] = [];
  const files: Record<string, string> = {};

  beforeAll(async () => {
    dir = await tempDir();
    for (const [name, make] of [
      ["ref.wav", (p: string) => makeAudio(p, { seconds: 1 })],
      ["other.m4a", (p: string) => makeAudio(p, { seconds: 1.5 })],
      ["third.mp3", (p: string) => makeAudio(p, { seconds: 2 })],
      ["quiet.wav", (p: string) => makeSilentAudio(p, { seconds: 1 })],
      ["long.mp3", (p: string) => makeAudio(p, { seconds: 301, sampleRate: 8000 })],
      ["notes.wav", makeNotMedia],
      ["empty.wav", (p: string) => writeFile(p, "")],
      ["talking.mp4", (p: string) => makeVideo(p, { seconds: 1, width: 64, height: 64, withAudio: true })],
      ["mute.mp4", (p: string) => makeVideo(p, { seconds: 1, width: 64, height: 64 })],
    ] as const) {
      files[name] = join(dir, name);
      await make(join(dir, name));
    }
    const machines = [];
    for (const name of ["a", "b"] as const) {
      const heygem = await HeygemEmulator.start({ render: "mux" });
      tts[name] = await TtsEmulator.start();
      const dataDir = join(dir, `worker-${name}`);
      const engine = new HeygemEngine({
        settings: { ...FAST, instances: [{ name: "gpu0", url: heygem.url, dataDir: heygem.dir }] },
        logger: silentLogger,
      });
      const worker = await startWorker({
        host: "127.0.0.1",
        port: 0,
        dataDir,
        engine,
        speaker: createSpeaker({
          engine: "heygem",
          tts: { instances: [{ name: "tts", url: tts[name].url, dataDir: tts[name].dir }] },
          dataDir,
        }),
        logger: silentLogger,
      });
      stops.push(async () => {
        await worker.close();
        await engine.close();
        await heygem.close();
        await tts[name].close();
      });
      machines.push({ name: `gpu-${name}`, host: "127.0.0.1", port: worker.port, max_concurrent: 1 });
    }
    await writeFile(join(dir, "machines.json"), JSON.stringify({ machines }));
    await writeKeysFile(join(dir, "keys.json"), [shop, other, boss]);
    gateway = await startTestGateway(
      { config: join(dir, "machines.json"), apiKeys: join(dir, "keys.json") },
      join(dir, "gateway"),
    );
    await until(() => ["gpu-a", "gpu-b"].every((m) => gateway.fleet.get(m)?.capabilities?.voice_clone));
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    for (const stop of stops) await stop();
    await removeDir(dir);
  });

  const call = (path: string, init: RequestInit = {}, key: TestKey = shop) =>
    fetch(`${gateway.url}${path}`, { ...init, headers: { ...bearer(key), ...init.headers } });
  const createVoice = async (fields: Record<string, string | { path: string }>, key: TestKey = shop) =>
    call("/voices", { method: "POST", body: await taskForm(fields) }, key);
  const created = async (fields: Record<string, string | { path: string }>, key: TestKey = shop) => {
    const res = await createVoice(fields, key);
    expect(res.status, await res.clone().text()).toBe(201);
    return (await res.json()) as VoiceJson;
  };
  const blobs = () => filesUnder(join(gateway.dataDir, "blobs"));
  const blobExists = (sha: string) =>
    stat(join(gateway.dataDir, "blobs", sha.slice(0, 2), sha)).then(
      () => true,
      () => false,
    );
  const total = async (key: TestKey = shop) =>
    ((await (await call("/voices", {}, key)).json()) as { total: number }).total;

  it("makes a voice from a recording, prepared once per machine, and deletes it", async () => {
    const first = await created({ audio: { path: files["ref.wav"] ?? "" }, name: "Lin", lang: "zh" });
    expect(first).toMatchObject({
      name: "Lin",
      lang: "zh",
      sha256: await sha256(files["ref.wav"] ?? ""),
      bytes: (await stat(files["ref.wav"] ?? "")).size,
      reference_text: "参考文本0",
      avatar_id: null,
      owner: "shop",
    });
    expect(first.duration).toBeCloseTo(1, 1);
    // Both machines idle: the first by name prepared it, from the recording sent to it.
    expect(tts.a.prepares).toEqual([
      { format: "wav", reference_audio: `origin_audio/mh-${first.sha256}.wav`, lang: "zh" },
    ]);
    expect(tts.b.prepares).toEqual([]);

    // The same recording again (the typed client's audio_file spelling): the machine had it.
    const second = (await (
      await createVoice({ audio_file: { path: files["ref.wav"] ?? "" } })
    ).json()) as VoiceJson;
    expect(second.voice_id).not.toBe(first.voice_id);
    expect(second.sha256).toBe(first.sha256);
    expect(second.reference_text).toBe("参考文本0");
    expect(tts.a.prepares).toHaveLength(1);

    expect(await (await call(`/voices/${first.voice_id}`)).json()).toEqual(first);
    const page = (await (await call("/voices?limit=1")).json()) as { voices: VoiceJson[]; total: number };
    expect(page.total).toBeGreaterThanOrEqual(2);
    expect(page.voices.map((v) => v.voice_id)).toEqual([second.voice_id]);

    expect((await call(`/voices/${second.voice_id}`, { method: "DELETE" })).status).toBe(204);
    expect((await call(`/voices/${second.voice_id}`)).status).toBe(404);
    // The other voice still holds the recording.
    expect(await blobExists(first.sha256)).toBe(true);
    expect((await call(`/voices/${first.voice_id}`, { method: "DELETE" })).status).toBe(204);
    expect(await blobExists(first.sha256)).toBe(false);
    expect((await call(`/voices/${first.voice_id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("makes a voice from an avatar's own sound, and refuses an avatar without any", async () => {
    const avatarRes = await call("/avatars", {
      method: "POST",
      body: await taskForm({ video: { path: files["talking.mp4"] ?? "" } }),
    });
    const avatar = (await avatarRes.json()) as { avatar_id: string; sha256: string };
    const voice = await created({ avatar_id: avatar.avatar_id, name: "from the avatar" });
    expect(voice).toMatchObject({ avatar_id: avatar.avatar_id, lang: "zh", reference_text: "参考文本0" });
    expect(voice.sha256).not.toBe(avatar.sha256);
    expect(voice.duration).toBeCloseTo(1, 1);
    // The sound track became a WAV the voice service takes as it is.
    expect(tts.a.prepares.at(-1)).toEqual({
      format: "wav",
      reference_audio: `origin_audio/mh-${voice.sha256}.wav`,
      lang: "zh",
    });
    expect(await blobExists(voice.sha256)).toBe(true);

    const mute = (await (
      await call("/avatars", {
        method: "POST",
        body: await taskForm({ video: { path: files["mute.mp4"] ?? "" } }),
      })
    ).json()) as { avatar_id: string };
    const before = await blobs();
    const refused = await createVoice({ avatar_id: mute.avatar_id });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: "AVATAR_HAS_NO_AUDIO", field: "avatar_id" });
    // Another key's avatar is as unknown as one that never was.
    const stolen = await createVoice({ avatar_id: avatar.avatar_id }, other);
    expect(await stolen.json()).toMatchObject({ error: "UNKNOWN_AVATAR", field: "avatar_id" });
    expect(await blobs()).toEqual(before);
  });

  it("moves on to the next machine when the first one's speech recognition is down", async () => {
    const preparedA = tts.a.prepares.length;
    tts.a.asrDown = true;
    try {
      const voice = await created({ audio: { path: files["other.m4a"] ?? "" }, lang: "EN" });
      expect(voice.lang).toBe("en");
      expect(tts.a.prepares).toHaveLength(preparedA + 1);
      // An M4A is not a format fish-speech takes as it is: the worker sends it a WAV.
      expect(tts.b.prepares).toEqual([
        { format: "wav", reference_audio: `origin_audio/mh-${voice.sha256}.wav`, lang: "en" },
      ]);
    } finally {
      tts.a.asrDown = false;
    }
  });

  it("refuses what cannot make a voice, naming the field, and leaves nothing behind", async () => {
    const before = await blobs();
    const voicesBefore = await total();
    const cases: [Record<string, string | { path: string }>, number, string, string | undefined][] = [
      [{ audio: { path: files["quiet.wav"] ?? "" } }, 400, "VOICE_REFERENCE_UNUSABLE", "audio"],
      [{ audio: { path: files["notes.wav"] ?? "" } }, 400, "INVALID_MEDIA", "audio"],
      [{ audio: { path: files["empty.wav"] ?? "" } }, 400, "EMPTY_FILE", "audio"],
      [{ audio: { path: files["long.mp3"] ?? "" } }, 400, "AUDIO_TOO_LONG", "audio"],
      [{ name: "nothing" }, 400, "MISSING_FIELD", "audio"],
      [{ audio: { path: files["ref.wav"] ?? "" }, lang: "中文" }, 400, "INVALID_FIELD", "lang"],
      [{ audio: { path: files["ref.wav"] ?? "" }, name: "x".repeat(201) }, 400, "INVALID_FIELD", "name"],
      [
        { avatar_id: "8d1f0000-0000-4000-8000-000000000000", audio: { path: files["ref.wav"] ?? "" } },
        400,
        "AUDIO_AND_AVATAR",
        "avatar_id",
      ],
      [{ avatar_id: "8d1f0000-0000-4000-8000-000000000000" }, 400, "UNKNOWN_AVATAR", "avatar_id"],
      [
        { audio: { path: files["ref.wav"] ?? "" }, video: { path: files["mute.mp4"] ?? "" } },
        400,
        "UNKNOWN_FIELD",
        "video",
      ],
    ];
    for (const [fields, status, error, field] of cases) {
      const res = await createVoice(fields);
      const body = (await res.json()) as { error: string; field?: string; message: string };
      expect({ status: res.status, ...body }, body.message).toMatchObject({ status, error, field });
    }
    const json = await call("/voices", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(json.status).toBe(415);
    expect(await blobs()).toEqual(before);
    expect(await total()).toBe(voicesBefore);
  });

  it("answers 503 with Retry-After when every machine that can clone fails, storing nothing", async () => {
    const before = await blobs();
    const voicesBefore = await total();
    await tts.a.stop();
    await tts.b.stop();
    try {
      const res = await createVoice({ audio: { path: files["third.mp3"] ?? "" } });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe("VOICE_SERVICE_UNAVAILABLE");
      expect(body.message).toMatch(/gpu-a.*gpu-b/);
    } finally {
      await tts.a.start();
      await tts.b.start();
    }
    expect(await blobs()).toEqual(before);
    expect(await total()).toBe(voicesBefore);
  });

  it("lets a submit key see only its own voices; an admin key sees all", async () => {
    const mine = await created({ audio: { path: files["ref.wav"] ?? "" } });
    expect(
      (await createVoice({ audio: { path: files["ref.wav"] ?? "" } }, testKey("nobody", "submit"))).status,
    ).toBe(401);
    expect((await call(`/voices/${mine.voice_id}`, {}, other)).status).toBe(404);
    expect((await call(`/voices/${mine.voice_id}`, { method: "DELETE" }, other)).status).toBe(404);
    expect(await total(other)).toBe(0);
    expect((await call(`/voices/${mine.voice_id}`, {}, boss)).status).toBe(200);
    expect(await total(boss)).toBe(await total(shop));
  });

  it("refuses to delete a voice a pending task speaks in, until the task is cancelled", async () => {
    const voice = await created({ audio: { path: files["ref.wav"] ?? "" } });
    // Drained machines take no task: it stays pending.
    for (const m of ["gpu-a", "gpu-b"]) await call(`/machines/${m}/drain`, { method: "POST" }, boss);
    const task = newTask({
      audio: { sha256: voice.sha256, name: "speech.wav", bytes: voice.bytes, duration: voice.duration },
      owner: "shop",
    });
    await gateway.store.createTask(task);
    const side = await openTestStore(gateway.dataDir);
    try {
      await side.db
        .updateTable("tasks")
        .set({ voice_id: voice.voice_id })
        .where("id", "=", task.id)
        .execute();
    } finally {
      await side.close();
    }
    try {
      const refused = await call(`/voices/${voice.voice_id}`, { method: "DELETE" });
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ error: "VOICE_IN_USE" });
      expect((await call(`/voices/${voice.voice_id}`)).status).toBe(200);
      expect((await call(`/tasks/${task.id}/cancel`, { method: "POST" })).status).toBe(200);
      expect((await call(`/voices/${voice.voice_id}`, { method: "DELETE" })).status).toBe(204);
    } finally {
      for (const m of ["gpu-a", "gpu-b"]) await call(`/machines/${m}/resume`, { method: "POST" }, boss);
    }
  });

  it("is what the typed client calls", async () => {
    const client = new Client({ url: gateway.url, apiKey: shop.key });
    const voice = await client.createVoice({ audio: await readFile(files["ref.wav"] ?? ""), name: "bytes" });
    expect(voice).toMatchObject({ name: "bytes", reference_text: "参考文本0", lang: "zh" });
    expect(await client.getVoice(voice.voice_id)).toEqual(voice);
    expect((await client.listVoices({ limit: 1 })).voices[0]?.voice_id).toBe(voice.voice_id);
    await client.deleteVoice(voice.voice_id);
    await expect(client.getVoice(voice.voice_id)).rejects.toMatchObject({ status: 404 });
  });
});

describe("voices on the embedded worker alone", () => {
  it("answers 422 VOICE_CLONE_UNAVAILABLE: its offline voice cannot clone; nothing is stored", async () => {
    const dir = await tempDir();
    const gateway = await startTestGateway({}, join(dir, "gateway"));
    try {
      const audio = join(dir, "ref.wav");
      await makeAudio(audio, { seconds: 1 });
      const before = await filesUnder(join(gateway.dataDir, "blobs"));
      const res = await fetch(`${gateway.url}/voices`, {
        method: "POST",
        body: await taskForm({ audio: { path: audio } }),
      });
      expect(res.status).toBe(422);
      expect(await res.json()).toMatchObject({ error: "VOICE_CLONE_UNAVAILABLE" });
      expect(await filesUnder(join(gateway.dataDir, "blobs"))).toEqual(before);
      expect(await (await fetch(`${gateway.url}/voices`)).json()).toMatchObject({ total: 0 });
    } finally {
      await gateway.close();
      await removeDir(dir);
    }
  });
});
