import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engines/engine.js";
import { FfmpegEngine } from "../../src/engines/ffmpeg-engine.js";
import { EspeakSpeaker } from "../../src/engines/speech/espeak-speaker.js";
import { FishSpeechSpeaker } from "../../src/engines/speech/fish-speech-speaker.js";
import type { Speaker } from "../../src/engines/speech/speaker.js";
import { ERROR_CODES } from "../../src/error-codes.js";
import { isWorkerError, WorkerClient } from "../../src/protocol/worker-client.js";
import { startWorker } from "../../src/worker/agent.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { makeAudio, makeSilentAudio } from "../helpers/media.js";
import { TtsEmulator } from "../helpers/tts-emulator.js";
import { sha256, silentLogger } from "./harness.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mh-voice-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A worker agent with `speaker`, and the calls a gateway makes of it. */
async function worker(speaker: Speaker | undefined, engine: Engine = new GateEngine(1)) {
  const dataDir = await tempDir();
  const handle = await startWorker({
    host: "127.0.0.1",
    port: 0,
    logger: silentLogger,
    engine,
    speaker,
    dataDir,
  });
  cleanups.push(() => handle.close());
  const call = (path: string, init?: RequestInit) => fetch(`${handle.url}${path}`, init);
  const dir = await tempDir();
  const reference = async (name: string, make: (path: string) => Promise<void>) => {
    const path = join(dir, name);
    await make(path);
    const content = await readFile(path);
    return { sha256: sha256(content), bytes: content.length, name, content };
  };
  const upload = async (ref: { sha256: string; content: Buffer }) => {
    const res = await call(`/v1/blobs/${ref.sha256}`, {
      method: "PUT",
      body: ref.content,
      headers: { "content-type": "application/octet-stream" },
    });
    expect([200, 201]).toContain(res.status);
  };
  const putVoice = async (id: string, body: Record<string, unknown>) => {
    const res = await call(`/v1/voices/${id}`, {
      method: "PUT",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const refOf = (r: { sha256: string; bytes: number; name: string }) => ({
    sha256: r.sha256,
    bytes: r.bytes,
    name: r.name,
  });
  const workLeft = async () => readdir(join(dataDir, "work")).catch(() => []);
  return { handle, call, reference, upload, putVoice, refOf, workLeft, dataDir };
}

async function fishSpeech() {
  const tts = await TtsEmulator.start();
  cleanups.push(() => tts.close());
  const speaker = new FishSpeechSpeaker({
    settings: { instances: [{ name: "tts", url: tts.url, dataDir: tts.dir }] },
    stateDir: join(await tempDir(), "voices"),
    prepareTimeoutMs: 2_000,
  });
  return { tts, speaker };
}

describe("PUT /v1/voices/{id} on a worker with fish-speech", () => {
  it("asks for the reference, prepares the voice once, and again when the container lost it", async () => {
    const { tts, speaker } = await fishSpeech();
    const w = await worker(speaker);
    const ref = await w.reference("lin.wav", (p) => makeAudio(p, { seconds: 1 }));

    const missing = await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" });
    expect(missing).toMatchObject({ status: 409, body: { error: "BLOB_MISSING", field: "reference" } });
    expect(tts.prepares).toHaveLength(0);

    await w.upload(ref);
    const first = await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" });
    expect(first).toEqual({ status: 200, body: { id: "v1", reference_text: "参考文本0", prepared: true } });
    expect(tts.prepares).toEqual([
      { format: "wav", reference_audio: `origin_audio/mh-${ref.sha256}.wav`, lang: "zh" },
    ]);
    // Another voice with the same recording and language is the same voice to the container.
    const again = await w.putVoice("v2", { reference: w.refOf(ref), lang: "zh" });
    expect(again.body).toEqual({ id: "v2", reference_text: "参考文本0", prepared: false });
    expect(tts.prepares).toHaveLength(1);

    // A container restarted with an empty voice folder: prepared again.
    await tts.emptyFolder();
    expect((await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" })).body).toMatchObject({
      prepared: true,
    });
    expect(tts.prepares).toHaveLength(2);

    // Several segments: one transcript, joined.
    tts.segments = 2;
    const en = await w.putVoice("v3", { reference: w.refOf(ref), lang: "en" });
    expect(en.body).toEqual({ id: "v3", reference_text: "参考文本0 参考文本1", prepared: true });
    expect(await w.workLeft()).toEqual([]);
  });

  it("classes a recording with no speech as the input's fault, a voice service down as the machine's", async () => {
    const { tts, speaker } = await fishSpeech();
    const w = await worker(speaker);
    const silent = await w.reference("quiet.wav", (p) => makeSilentAudio(p, { seconds: 1 }));
    await w.upload(silent);
    const unheard = await w.putVoice("quiet", { reference: w.refOf(silent), lang: "zh" });
    expect(unheard.status).toBe(400);
    expect(unheard.body).toMatchObject({ error: "VOICE_REFERENCE_UNUSABLE", field: "reference" });
    expect(String(unheard.body.message)).toMatch(/no speech/);

    const ref = await w.reference("lin.mp3", (p) => makeAudio(p, { seconds: 1 }));
    await w.upload(ref);
    tts.asrDown = true;
    const asr = await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" });
    expect(asr.status).toBe(503);
    expect(asr.body).toMatchObject({ error: "VOICE_SERVICE_UNAVAILABLE" });
    expect(String(asr.body.message)).toMatch(/10095|ASR/);

    tts.asrDown = false;
    await tts.stop();
    const down = await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" });
    expect(down).toMatchObject({ status: 503, body: { error: "VOICE_SERVICE_UNAVAILABLE" } });
    expect(String(down.body.message)).not.toContain(w.dataDir);

    // Back up: the gateway's client reads the answer and its refusals by code.
    await tts.start();
    const client = new WorkerClient({ baseUrl: w.handle.url, requestTimeoutMs: 5_000 });
    expect(await client.putVoice("v1", { reference: w.refOf(ref), lang: "zh" })).toEqual({
      id: "v1",
      reference_text: "参考文本0",
      prepared: true,
    });
    // An mp3 goes to the server as it is, without a dot in its format.
    expect(tts.prepares.at(-1)).toMatchObject({ format: "mp3" });
    const refused = await client
      .putVoice("quiet", { reference: w.refOf(silent), lang: "zh" })
      .catch((e) => e);
    expect(isWorkerError(refused, ERROR_CODES.VOICE_REFERENCE_UNUSABLE)).toBe(true);
    expect((refused as { kind: string }).kind).toBe("input");
    expect(await w.workLeft()).toEqual([]);
  });

  it("refuses a body that does not match the protocol, naming the field", async () => {
    const { speaker } = await fishSpeech();
    const w = await worker(speaker);
    const ref = { sha256: "a".repeat(64), bytes: 1 };
    expect((await w.putVoice("v1", { reference: ref, lang: "z h" })).body).toMatchObject({
      error: "INVALID_REQUEST",
    });
    expect((await w.putVoice("v1", { lang: "zh" })).body).toMatchObject({ field: "reference" });
    expect((await w.putVoice("bad id!", { reference: ref })).status).toBe(400);
  });
});

describe("PUT /v1/voices/{id} on a worker that cannot clone", () => {
  it("answers 422 VOICE_CLONE_UNAVAILABLE, with the offline voice and without any", async () => {
    for (const speaker of [new EspeakSpeaker(), undefined]) {
      const w = await worker(speaker, new FfmpegEngine({ capacity: 1 }));
      const ref = await w.reference("lin.wav", (p) => makeAudio(p, { seconds: 1 }));
      await w.upload(ref);
      const res = await w.putVoice("v1", { reference: w.refOf(ref), lang: "zh" });
      expect(res).toMatchObject({ status: 422, body: { error: "VOICE_CLONE_UNAVAILABLE" } });
      const client = new WorkerClient({ baseUrl: w.handle.url, requestTimeoutMs: 5_000 });
      const err = await client.putVoice("v1", { reference: w.refOf(ref), lang: "zh" }).catch((e) => e);
      expect(isWorkerError(err, ERROR_CODES.VOICE_CLONE_UNAVAILABLE)).toBe(true);
    }
  });
});
