import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engines/engine.js";
import { FfmpegEngine } from "../../src/engines/ffmpeg-engine.js";
import { HeygemEngine } from "../../src/engines/heygem/heygem-engine.js";
import { EspeakSpeaker } from "../../src/engines/speech/espeak-speaker.js";
import { FishSpeechSpeaker } from "../../src/engines/speech/fish-speech-speaker.js";
import type { Speaker } from "../../src/engines/speech/speaker.js";
import type { Health, JobView, PutJobBody } from "../../src/protocol/schemas.js";
import { startWorker } from "../../src/worker/agent.js";
import { FAST } from "../engines/heygem/harness.js";
import { HeygemEmulator } from "../helpers/heygem-emulator.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { TtsEmulator } from "../helpers/tts-emulator.js";
import { until } from "../helpers/until.js";
import { sha256, silentLogger } from "./harness.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mh-text-job-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A worker in front of `engine` with `speaker`, and what a test does with it. */
async function worker(engine: Engine, speaker: Speaker | undefined) {
  const dataDir = await tempDir();
  const handle = await startWorker({
    host: "127.0.0.1",
    port: 0,
    logger: silentLogger,
    engine,
    speaker,
    dataDir,
  });
  cleanups.push(async () => {
    await handle.close();
    await engine.close?.();
  });
  const call = (path: string, init?: RequestInit) => fetch(`${handle.url}${path}`, init);
  const upload = async (content: Buffer, name: string) => {
    const hash = sha256(content);
    const res = await call(`/v1/blobs/${hash}`, {
      method: "PUT",
      body: content,
      headers: { "content-type": "application/octet-stream" },
    });
    expect([200, 201]).toContain(res.status);
    return { sha256: hash, bytes: content.length, name };
  };
  const put = (id: string, body: unknown) =>
    call(`/v1/jobs/${id}`, {
      method: "PUT",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
  const messages: string[] = [];
  const view = async (id: string) => {
    const v = (await (await call(`/v1/jobs/${id}`)).json()) as JobView;
    if (v.message !== undefined && messages.at(-1) !== v.message) messages.push(v.message);
    return v;
  };
  const finished = (id: string) =>
    until(
      async () => {
        const v = await view(id);
        return ["succeeded", "failed", "cancelled"].includes(v.status) && v;
      },
      60_000,
      { what: `job ${id} finished` },
    );
  const dir = await tempDir();
  const video = async () => {
    const path = join(dir, "face.mp4");
    await makeVideo(path, { seconds: 1, width: 64, height: 64 });
    return upload(await readFile(path), "face.mp4");
  };
  const save = async (res: Response, name: string) => {
    const path = join(dir, name);
    await writeFile(path, Buffer.from(await res.arrayBuffer()));
    return path;
  };
  return { handle, call, upload, put, view, finished, video, save, messages, dir };
}

describe("text jobs on a worker with fish-speech and HeyGem", () => {
  it("speaks the text in a cloned voice, lip-syncs it to a real MP4, and keeps the spoken audio", async () => {
    const tts = await TtsEmulator.start();
    cleanups.push(() => tts.close());
    const heygem = await HeygemEmulator.start({ render: "mux", stepDelayMs: 20 });
    cleanups.push(() => heygem.close());
    const w = await worker(
      new HeygemEngine({
        settings: { ...FAST, instances: [{ name: "gpu0", url: heygem.url, dataDir: heygem.dir }] },
        logger: silentLogger,
      }),
      new FishSpeechSpeaker({
        settings: { instances: [{ name: "tts", url: tts.url, dataDir: tts.dir }] },
        stateDir: join(await tempDir(), "voices"),
      }),
    );
    const health = (await (await w.call("/v1/health")).json()) as Health;
    expect(health.capabilities).toEqual({ lipsync: "heygem", tts: true, voice_clone: true });

    const refPath = join(w.dir, "ref.wav");
    await makeAudio(refPath, { seconds: 1 });
    const reference = await w.upload(await readFile(refPath), "ref.wav");
    const video = await w.video();
    const text = "你好，欢迎来到这里。今天我们来介绍一个新产品。";
    const body: PutJobBody = {
      video,
      speech: { text, lang: "zh", voice: { id: "v1", reference }, settings: { top_p: 0.6 } },
    };
    const created = await w.put("t1", body);
    expect(created.status).toBe(201);
    expect(((await created.json()) as JobView).speech_audio).toBeNull();
    const done = await w.finished("t1");
    expect(done.error).toBeUndefined();
    expect(done.status).toBe("succeeded");
    expect(w.messages.some((m) => m.startsWith("speech"))).toBe(true);
    expect(w.messages.some((m) => m.startsWith("lipsync"))).toBe(true);

    expect(tts.prepares).toHaveLength(1);
    expect(tts.invokes.every((b) => b.top_p === 0.6)).toBe(true);
    const audioRes = await w.call("/v1/jobs/t1/audio");
    expect(audioRes.status).toBe(200);
    expect(audioRes.headers.get("content-type")).toBe("audio/wav");
    const audioPath = await w.save(audioRes, "spoken.wav");
    expect(done.speech_audio).toEqual({
      sha256: sha256(await readFile(audioPath)),
      bytes: (await readFile(audioPath)).length,
    });
    const spokenSeconds =
      tts.invokes.reduce((n, b) => n + tts.samplesFor(String(b.text)), 0) / tts.sampleRate;
    expect((await probe(audioPath)).durationSec).toBeCloseTo(spokenSeconds, 2);

    const mp4 = await probe(await w.save(await w.call("/v1/jobs/t1/result"), "out.mp4"));
    expect(mp4.video).toBeDefined();
    expect(mp4.audio).toBeDefined();
    expect(mp4.durationSec).toBeGreaterThan(0);

    // A second job with the same voice: prepared once on this instance.
    await w.put("t2", { ...body, speech: { ...body.speech, text: "再见。" } });
    expect((await w.finished("t2")).status).toBe("succeeded");
    expect(tts.prepares).toHaveLength(1);
  });

  it("fails as the machine's fault when the voice service is down or its ASR is, without lip-syncing", async () => {
    const tts = await TtsEmulator.start();
    cleanups.push(() => tts.close());
    const heygem = await HeygemEmulator.start({ stepDelayMs: 20 });
    cleanups.push(() => heygem.close());
    const w = await worker(
      new HeygemEngine({
        settings: { ...FAST, instances: [{ name: "gpu0", url: heygem.url, dataDir: heygem.dir }] },
        logger: silentLogger,
      }),
      new FishSpeechSpeaker({
        settings: { instances: [{ name: "tts", url: tts.url, dataDir: tts.dir }] },
        stateDir: await tempDir(),
      }),
    );
    const refPath = join(w.dir, "ref.wav");
    await makeAudio(refPath, { seconds: 1 });
    const reference = await w.upload(await readFile(refPath), "ref.wav");
    const video = await w.upload(Buffer.from("video"), "face.mp4");
    tts.asrDown = true;
    await w.put("asr", { video, speech: { text: "你好", lang: "zh", voice: { id: "v1", reference } } });
    const asr = await w.finished("asr");
    expect(asr.error?.kind).toBe("machine");
    expect(asr.error?.message).toMatch(/ASR/);
    await tts.stop();
    await w.put("down", { video, speech: { text: "你好", lang: "zh" } });
    expect((await w.finished("down")).error?.kind).toBe("machine");
    expect(heygem.submits).toHaveLength(0);
    expect((await w.call("/v1/jobs/down/audio")).status).toBe(409);
  });
});

describe("text jobs with the offline voice (ffmpeg engine, espeak-ng)", () => {
  it("speaks Chinese and English to real MP4s and says it cannot clone", async () => {
    const w = await worker(new FfmpegEngine({ capacity: 1 }), new EspeakSpeaker());
    const health = (await (await w.call("/v1/health")).json()) as Health;
    expect(health.capabilities).toEqual({ lipsync: "ffmpeg", tts: true, voice_clone: false });
    const video = await w.video();
    for (const [id, text, lang] of [
      ["zh", "你好", "zh"],
      ["en", "Hello, this is the offline voice speaking.", "en"],
    ] as const) {
      expect((await w.put(id, { video, speech: { text, lang } })).status).toBe(201);
      const done = await w.finished(id);
      expect(done.error).toBeUndefined();
      const spoken = await probe(await w.save(await w.call(`/v1/jobs/${id}/audio`), `${id}.wav`));
      expect(spoken.audio).toBeDefined();
      expect(spoken.durationSec).toBeGreaterThan(0.3);
      const mp4 = await probe(await w.save(await w.call(`/v1/jobs/${id}/result`), `${id}.mp4`));
      expect(mp4.video).toBeDefined();
      expect(mp4.audio).toBeDefined();
      expect(mp4.durationSec).toBeGreaterThan(0);
    }
    const reference = await w.upload(Buffer.from("reference"), "ref.wav");
    await w.put("clone", { video, speech: { text: "你好", lang: "zh", voice: { id: "v1", reference } } });
    const clone = await w.finished("clone");
    expect(clone.error?.kind).toBe("input");
    expect(clone.error?.message).toMatch(/cannot clone/);
    await w.put("empty", { video, speech: { text: "。。。", lang: "zh" } });
    expect((await w.finished("empty")).error?.kind).toBe("input");
  });
});

describe("PUT /v1/jobs with speech: what is refused at once", () => {
  it("needs exactly one of audio and speech, settings in range, and a machine that speaks", async () => {
    const w = await worker(new FfmpegEngine({ capacity: 1 }), new EspeakSpeaker());
    const video = await w.upload(Buffer.from("video"), "face.mp4");
    const audio = await w.upload(Buffer.from("audio"), "a.wav");
    const expect400 = async (body: unknown, field: string) => {
      const res = await w.put("x", body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { field?: string }).field).toBe(field);
    };
    await expect400({ video }, "audio");
    await expect400({ video, audio, speech: { text: "你好" } }, "speech");
    await expect400({ video, speech: { text: "你好", settings: { top_p: 1.5 } } }, "speech.settings.top_p");
    await expect400(
      { video, speech: { text: "你好", settings: { chunk_length: 150.5 } } },
      "speech.settings.chunk_length",
    );
    await expect400({ video, speech: { text: "" } }, "speech.text");
    expect((await w.call("/v1/jobs/x")).status).toBe(404);

    const mute = await worker(new FfmpegEngine({ capacity: 1 }), undefined);
    const health = (await (await mute.call("/v1/health")).json()) as Health;
    expect(health.capabilities).toEqual({ lipsync: "ffmpeg", tts: false, voice_clone: false });
    const v2 = await mute.upload(Buffer.from("video"), "face.mp4");
    const refused = await mute.put("y", { video: v2, speech: { text: "你好" } });
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { error: string }).error).toBe("TTS_UNAVAILABLE");
  });
});
