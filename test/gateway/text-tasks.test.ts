import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { SPEECH_BOUNDS } from "../../src/protocol/schemas.js";
import { VoiceStore } from "../../src/store/voice-store.js";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { filesUnder, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

interface TaskJson {
  task_id: string;
  status: string;
  error_kind: string | null;
  error_message: string | null;
  audio_url: string;
  result_url: string;
  audio_name: string;
  audio_bytes: number;
  audio_duration: number;
  avatar_id: string | null;
  files_deleted_at: string | null;
  speech: {
    text: string;
    lang: string;
    voice_id: string | null;
    settings: Record<string, number>;
    spoken: boolean;
  } | null;
}

interface EventJson {
  type: string;
  message: string | null;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

let fixtures: string;
let video: string;
let audio: string;
beforeAll(async () => {
  fixtures = await tempDir();
  video = join(fixtures, "face.mp4");
  audio = join(fixtures, "line.mp3");
  await makeVideo(video, { seconds: 1, width: 160, height: 120 });
  await makeAudio(audio, { seconds: 1.2 });
  return () => removeDir(fixtures);
});

/**
 * Issue 12, "Text tasks", on `npm start`'s embedded gateway: its worker speaks with the offline
 * voice (espeak-ng), so `text=你好` with a video gives a real MP4; it cannot clone.
 */
describe("text tasks on the embedded gateway", () => {
  let gateway: Gateway;
  beforeAll(async () => {
    gateway = await startTestGateway();
    return () => gateway.close();
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${gateway.url}${path}`, init);
  const post = async (fields: Record<string, string | { path: string; name?: string }>, route = "/tasks") =>
    call(route, { method: "POST", body: await taskForm(fields) });
  const task = async (id: string) => (await (await call(`/tasks/${id}`)).json()) as TaskJson;
  const finished = (id: string) =>
    until(
      async () => {
        const t = await task(id);
        return ["completed", "failed", "cancelled"].includes(t.status) && t;
      },
      60_000,
      { what: `task ${id} finished` },
    );
  const save = async (res: Response, name: string) => {
    const path = join(fixtures, name);
    await writeFile(path, Buffer.from(await res.arrayBuffer()));
    return path;
  };

  it("speaks text=你好 and lip-syncs it to a real MP4 as long as the speech, and keeps the WAV", async () => {
    // Drained first, so the task is seen before it is spoken.
    expect((await call("/machines/embedded/drain", { method: "POST" })).status).toBe(200);
    const res = await post({ text: "你好", video: { path: video }, top_p: "0.5" });
    expect(res.status).toBe(200);
    const created = (await res.json()) as TaskJson;
    expect(created.speech).toEqual({
      text: "你好",
      lang: "zh",
      voice_id: null,
      settings: { top_p: 0.5 },
      spoken: false,
    });
    expect(created).toMatchObject({ audio_name: "", audio_bytes: 0 });
    expect(created.audio_duration).toBeGreaterThan(0);
    expect(created.audio_url).toBe(`${gateway.url}/tasks/${created.task_id}/audio`);
    const early = await call(`/tasks/${created.task_id}/audio`);
    expect(early.status).toBe(409);
    expect(((await early.json()) as { error: string }).error).toBe("AUDIO_NOT_READY");
    expect((await call("/machines/embedded/resume", { method: "POST" })).status).toBe(200);

    const done = await finished(created.task_id);
    expect(done.error_message).toBeNull();
    expect(done.status).toBe("completed");
    expect(done.speech?.spoken).toBe(true);
    expect(done.audio_name).toBe("speech.wav");

    const spokenRes = await call(`/tasks/${created.task_id}/audio`);
    expect(spokenRes.status).toBe(200);
    expect(spokenRes.headers.get("content-type")).toBe("audio/wav");
    const wavPath = await save(spokenRes, "spoken.wav");
    const wavBytes = await readFile(wavPath);
    expect(done.audio_bytes).toBe(wavBytes.length);
    const wav = await probe(wavPath);
    expect(wav.audio).toBeDefined();
    expect(wav.durationSec).toBeGreaterThan(0.3);
    expect(done.audio_duration).toBeCloseTo(wav.durationSec, 2);

    const mp4 = await probe(await save(await call(`/tasks/${created.task_id}/result`), "spoken.mp4"));
    expect(mp4.video).toMatchObject({ width: 160, height: 120 });
    expect(mp4.audio).toBeDefined();
    expect(Math.abs(mp4.durationSec - wav.durationSec)).toBeLessThan(0.2);

    const { events } = (await (await call(`/tasks/${created.task_id}/events`)).json()) as {
      events: EventJson[];
    };
    expect(events.find((e) => e.type === "created")?.message).toMatch(/^text task: 2 characters in zh/);
    const steps = events.filter((e) => e.type === "progress").map((e) => e.message ?? "");
    expect(steps.some((m) => m.startsWith("speech"))).toBe(true);
    expect(steps.some((m) => m.startsWith("lipsync"))).toBe(true);
    expect(steps.findIndex((m) => m.startsWith("speech"))).toBeLessThan(
      steps.findIndex((m) => m.startsWith("lipsync")),
    );
    expect(events.find((e) => e.type === "completed")?.message).toMatch(/spoken audio/);
  });

  it("speaks with an avatar's video too (POST /tasks/sync), in English when told", async () => {
    const avatar = (await (
      await call("/avatars", { method: "POST", body: await taskForm({ video: { path: video } }) })
    ).json()) as { avatar_id: string };
    const res = await post({ text: "Hello there.", lang: "en", avatar_id: avatar.avatar_id }, "/tasks/sync");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("video/mp4");
    const id = res.headers.get("x-task-id") ?? "";
    const mp4 = await probe(await save(res, "avatar.mp4"));
    const done = await task(id);
    expect(done.avatar_id).toBe(avatar.avatar_id);
    expect(done.speech).toMatchObject({ text: "Hello there.", lang: "en", spoken: true });
    expect(mp4.audio).toBeDefined();
    expect(Math.abs(mp4.durationSec - done.audio_duration)).toBeLessThan(0.2);
  });

  it("answers an uploaded audio at GET /tasks/{id}/audio as it came", async () => {
    // Empty speech fields beside an audio file say nothing (a form that sends every field).
    const created = (await (
      await post({ audio: { path: audio }, video: { path: video }, voice_id: "", top_p: " " })
    ).json()) as TaskJson;
    expect(created.speech).toBeNull();
    const res = await call(`/tasks/${created.task_id}/audio`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("audio/mpeg");
    expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(await readFile(audio)));
    expect((await call(`/tasks/${"0".repeat(8)}-0000-0000-0000-${"0".repeat(12)}/audio`)).status).toBe(404);
    await finished(created.task_id);
  });

  it("fails text with nothing to say at once, as the input's fault, and retries it as text", async () => {
    const created = (await (await post({ text: "。。。", video: { path: video } })).json()) as TaskJson;
    const failed = await finished(created.task_id);
    expect(failed).toMatchObject({ status: "failed", error_kind: "input" });
    const gone = await call(`/tasks/${created.task_id}/audio`);
    expect(gone.status).toBe(409);
    expect(((await gone.json()) as { message: string }).message).toMatch(/failed/);
    const retried = await call(`/tasks/${created.task_id}/retry`, { method: "POST" });
    expect(retried.status).toBe(200);
    expect(((await retried.json()) as TaskJson).speech?.text).toBe("。。。");
    expect((await finished(created.task_id)).error_kind).toBe("input");
  });

  it("refuses every bad text form with a 400 naming the field, and keeps nothing", async () => {
    // A voice the embedded worker cannot speak in: its offline voice does not clone.
    const ref = join(fixtures, "ref.wav");
    await makeAudio(ref, { seconds: 1 });
    const refBytes = await readFile(ref);
    const voices = new VoiceStore(gateway.store.db);
    const voice = await voices.create({
      id: "v-lin",
      owner: null,
      name: "Lin",
      lang: "zh",
      sha256: sha256(refBytes),
      fileName: "ref.wav",
      bytes: refBytes.length,
      duration: 1,
      referenceText: null,
      avatarId: null,
    });
    const before = await filesUnder(gateway.dataDir);
    const total = async () => ((await (await call("/tasks")).json()) as { total: number }).total;
    const tasksBefore = await total();
    const v = { path: video };
    const cases: [Record<string, string | { path: string; name?: string }>, string, string][] = [
      [{ text: "你好", audio: { path: audio }, video: v }, "AUDIO_AND_TEXT", "audio"],
      [{ audio_file: { path: audio }, text: "你好", video: v }, "AUDIO_AND_TEXT", "audio_file"],
      [{ audio: { path: audio }, voice_id: voice.id, video: v }, "MISSING_FIELD", "text"],
      [{ audio: { path: audio }, temperature: "0.5", video: v }, "MISSING_FIELD", "text"],
      [{ video: v }, "MISSING_FIELD", "audio"],
      [{ text: "  \n ", video: v }, "INVALID_FIELD", "text"],
      [{ text: "字".repeat(SPEECH_BOUNDS.text.maxLength + 1), video: v }, "INVALID_FIELD", "text"],
      [{ text: { path: audio, name: "t.txt" }, video: v }, "INVALID_FIELD", "text"],
      [{ text: "你好", temperature: "1.5", video: v }, "INVALID_FIELD", "temperature"],
      [{ text: "你好", top_p: "abc", video: v }, "INVALID_FIELD", "top_p"],
      [{ text: "你好", chunk_length: "150.5", video: v }, "INVALID_FIELD", "chunk_length"],
      [{ text: "你好", repetition_penalty: "0.5", video: v }, "INVALID_FIELD", "repetition_penalty"],
      [{ text: "你好", top_p: "Infinity", video: v }, "INVALID_FIELD", "top_p"],
      [{ text: "你好", lang: "中文", video: v }, "INVALID_FIELD", "lang"],
      [{ text: "你好", voice_id: voice.id, video: v }, "NO_VOICE_CLONE_MACHINE", "voice_id"],
      [{ text: "你好", voice_id: "nobody", video: v }, "NO_VOICE_CLONE_MACHINE", "voice_id"],
      [{ text: "你好", avatar_id: "nobody" }, "UNKNOWN_AVATAR", "avatar_id"],
      [{ text: "你好" }, "MISSING_FIELD", "video"],
    ];
    for (const [fields, error, field] of cases) {
      for (const route of ["/tasks", "/tasks/sync"]) {
        const res = await post(fields, route);
        const body = (await res.json()) as { error: string; field?: string; message: string };
        expect({ route, status: res.status, error: body.error, field: body.field }, body.message).toEqual({
          route,
          status: 400,
          error,
          field,
        });
      }
    }
    expect(await total()).toBe(tasksBefore);
    expect(await filesUnder(gateway.dataDir)).toEqual(before);
  });
});

describe("a text task's audio after --retention", () => {
  it("answers 410 RESULT_EXPIRED once its files are deleted", async () => {
    const gateway = await startTestGateway({ retention: "1s", retentionRows: "1h" });
    try {
      const res = await fetch(`${gateway.url}/tasks/sync`, {
        method: "POST",
        body: await taskForm({ text: "你好", video: { path: video } }),
      });
      expect(res.status).toBe(200);
      const id = res.headers.get("x-task-id") ?? "";
      await res.arrayBuffer();
      await until(
        async () => {
          const t = (await (await fetch(`${gateway.url}/tasks/${id}`)).json()) as TaskJson;
          return t.files_deleted_at !== null;
        },
        30_000,
        { what: "files deleted" },
      );
      const gone = await fetch(`${gateway.url}/tasks/${id}/audio`);
      expect(gone.status).toBe(410);
      expect(((await gone.json()) as { error: string }).error).toBe("RESULT_EXPIRED");
    } finally {
      await gateway.close();
    }
  });
});

describe("a voice belongs to the key that made it", () => {
  it("is UNKNOWN_VOICE to another key, and taken from its own (the voice's language by default)", async () => {
    const dir = await tempDir();
    const shop = testKey("shop", "submit");
    const other = testKey("other", "submit");
    await writeKeysFile(join(dir, "keys.json"), [shop, other]);
    // A machine not heard from yet: what it can do is unknown, so a voice is not refused for it.
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({ machines: [{ name: "gpu-1", host: "127.0.0.1", port: 9, max_concurrent: 1 }] }),
    );
    const gateway = await startTestGateway(
      { apiKeys: join(dir, "keys.json"), config: join(dir, "machines.json") },
      join(dir, "data"),
    );
    try {
      await new VoiceStore(gateway.store.db).create({
        id: "v-shop",
        owner: "shop",
        name: null,
        lang: "en",
        sha256: "c".repeat(64),
        fileName: "ref.wav",
        bytes: 100,
        duration: 3,
        referenceText: null,
        avatarId: null,
      });
      const before = await filesUnder(gateway.dataDir);
      const send = async (key: typeof shop) =>
        fetch(`${gateway.url}/tasks`, {
          method: "POST",
          headers: bearer(key),
          body: await taskForm({ text: "Hello.", voice_id: "v-shop", video: { path: video } }),
        });
      const refused = await send(other);
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ error: "UNKNOWN_VOICE", field: "voice_id" });
      expect(await filesUnder(gateway.dataDir)).toEqual(before);
      const taken = await send(shop);
      expect(taken.status).toBe(200);
      const task = (await taken.json()) as TaskJson;
      expect(task.speech).toMatchObject({ voice_id: "v-shop", lang: "en", spoken: false });
    } finally {
      await gateway.close();
      await removeDir(dir);
    }
  });
});
