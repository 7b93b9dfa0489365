import { createReadStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { HeygemEngine } from "../../src/engines/heygem/heygem-engine.js";
import { FishSpeechSpeaker } from "../../src/engines/speech/fish-speech-speaker.js";
import { VoiceStore } from "../../src/store/voice-store.js";
import { startWorker } from "../../src/worker/agent.js";
import { FAST } from "../engines/heygem/harness.js";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { HeygemEmulator } from "../helpers/heygem-emulator.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { TtsEmulator } from "../helpers/tts-emulator.js";
import { until } from "../helpers/until.js";
import { silentLogger } from "../worker/harness.js";

interface TaskJson {
  task_id: string;
  status: string;
  machine: string | null;
  attempts: number;
  error_kind: string | null;
  error_message: string | null;
  audio_duration: number;
  speech: { voice_id: string | null; spoken: boolean } | null;
}

interface EventJson {
  type: string;
  machine: string | null;
  message: string | null;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Box {
  readonly name: string;
  readonly heygem: HeygemEmulator;
  readonly tts: TtsEmulator | undefined;
}

/**
 * Two machines that speak and clone (a worker agent in front of a HeyGem emulator and a fish-speech
 * emulator each) and one that only lip-syncs (no --tts), behind a gateway with a machines file, and
 * a voice row whose reference is in the gateway's blob store.
 */
async function startFleet(options: { manual?: boolean } = {}) {
  const dir = await tempDir("mh-text-fleet-");
  cleanups.push(() => removeDir(dir));
  const boxes: Box[] = [];
  const entries = [];
  for (const name of ["speak-a", "speak-b", "mute-c"]) {
    const heygem = await HeygemEmulator.start({
      render: "mux",
      ...(options.manual ? {} : { stepDelayMs: 20 }),
    });
    cleanups.push(() => heygem.close());
    const tts = name === "mute-c" ? undefined : await TtsEmulator.start();
    if (tts) cleanups.push(() => tts.close());
    const engine = new HeygemEngine({
      settings: { ...FAST, instances: [{ name: "gpu0", url: heygem.url, dataDir: heygem.dir }] },
      logger: silentLogger,
    });
    const worker = await startWorker({
      host: "127.0.0.1",
      port: 0,
      dataDir: join(dir, name),
      logger: silentLogger,
      engine,
      speaker: tts
        ? new FishSpeechSpeaker({
            settings: { instances: [{ name: "tts", url: tts.url, dataDir: tts.dir }] },
            stateDir: join(dir, name, "voices"),
          })
        : undefined,
    });
    cleanups.push(async () => {
      await worker.close();
      await engine.close?.();
    });
    boxes.push({ name, heygem, tts });
    entries.push({ name, host: "127.0.0.1", port: worker.port, max_concurrent: 1 });
  }
  const machinesFile = join(dir, "machines.json");
  await writeFile(machinesFile, JSON.stringify({ machines: entries }));
  // No machine here goes away, so a loaded CI machine that stalls a probe past the usual 1 s
  // must not have one declared unreachable and its text tasks moved (seen once, failing a run).
  const gateway = await startTestGateway(
    { config: machinesFile, machineGrace: "10000" },
    join(dir, "gateway"),
  );
  cleanups.push(() => gateway.close());
  await until(
    async () => {
      const { machines } = (await (await fetch(`${gateway.url}/machines`)).json()) as {
        machines: { state: string }[];
      };
      return machines.every((m) => m.state === "up");
    },
    10_000,
    { what: "every machine up" },
  );

  const video = join(dir, "face.mp4");
  const audio = join(dir, "line.wav");
  const reference = join(dir, "ref.wav");
  await makeVideo(video, { seconds: 1, width: 96, height: 96 });
  await makeAudio(audio, { seconds: 1 });
  await makeAudio(reference, { seconds: 2 });
  const blobs = new BlobStore(join(gateway.dataDir, "blobs"));
  const ref = await blobs.put(createReadStream(reference));
  const voice = await new VoiceStore(gateway.store.db).create({
    id: "lin",
    owner: null,
    name: "Lin",
    lang: "zh",
    sha256: ref.sha256,
    fileName: "ref.wav",
    bytes: ref.bytes,
    duration: 2,
    referenceText: null,
    avatarId: null,
  });

  const call = (path: string, init: RequestInit = {}) => fetch(`${gateway.url}${path}`, init);
  const submit = async (fields: Record<string, string>) => {
    const res = await call("/tasks", {
      method: "POST",
      body: await taskForm({ ...fields, video: { path: video } }),
    });
    const body = (await res.json()) as TaskJson & { error?: string; message?: string };
    expect(res.status, body.message).toBe(200);
    return body.task_id;
  };
  const task = async (id: string) => (await (await call(`/tasks/${id}`)).json()) as TaskJson;
  const events = async (id: string) =>
    ((await (await call(`/tasks/${id}/events`)).json()) as { events: EventJson[] }).events;
  const finished = (id: string) =>
    until(
      async () => {
        const t = await task(id);
        return ["completed", "failed", "cancelled"].includes(t.status) && t;
      },
      60_000,
      { what: `task ${id} finished` },
    );
  const box = (name: string) => boxes.find((b) => b.name === name) as Box;
  return { dir, gateway, boxes, box, voice, video, audio, call, submit, task, events, finished };
}

/** Issue 12, "Engines and placement": text tasks on machines that speak, voices where they clone. */
describe("text tasks on a fleet of HeyGem machines with fish-speech", () => {
  it("runs text tasks on both speaking machines, prepares the voice once on each, never on the mute one", async () => {
    const f = await startFleet();
    const voiced = [];
    for (const line of ["你好，欢迎。", "今天我们介绍新产品。", "谢谢大家。", "再见。"])
      voiced.push(await f.submit({ text: line, voice_id: f.voice.id, temperature: "0.5" }));
    const plain = await f.submit({ text: "没有声音克隆。" });
    const audioTasks = [];
    for (let i = 0; i < 3; i++) {
      const res = await f.call("/tasks", {
        method: "POST",
        body: await taskForm({ audio: { path: f.audio }, video: { path: f.video } }),
      });
      audioTasks.push(((await res.json()) as TaskJson).task_id);
    }
    const textTasks = [...voiced, plain];
    for (const id of [...textTasks, ...audioTasks]) {
      const done = await f.finished(id);
      expect(done.error_message).toBeNull();
      expect(done.status).toBe("completed");
    }
    const ranOn = new Set<string>();
    for (const id of textTasks) {
      const t = await f.task(id);
      expect(t.speech?.spoken).toBe(true);
      for (const e of await f.events(id)) if (e.type === "dispatched" && e.machine) ranOn.add(e.machine);
      const mp4 = join(f.dir, `${id}.mp4`);
      await writeFile(mp4, Buffer.from(await (await f.call(`/tasks/${id}/result`)).arrayBuffer()));
      const media = await probe(mp4);
      expect(media.audio).toBeDefined();
      expect(Math.abs(media.durationSec - t.audio_duration)).toBeLessThan(0.15);
    }
    expect([...ranOn].sort()).toEqual(["speak-a", "speak-b"]);
    // The voice went to each speaking machine and was prepared there once, whatever the tasks.
    for (const name of ["speak-a", "speak-b"]) {
      const tts = f.box(name).tts as TtsEmulator;
      expect(tts.prepares).toHaveLength(1);
      expect(tts.invokes.length).toBeGreaterThan(0);
      expect(tts.invokes.filter((b) => b.temperature !== undefined).every((b) => b.temperature === 0.5)).toBe(
        true,
      );
    }
    // The mute machine lip-synced audio tasks only: one HeyGem submit per audio task it ran.
    const onMute = (await Promise.all(audioTasks.map(f.task))).filter((t) => t.machine === "mute-c");
    expect(f.box("mute-c").heygem.submits.filter((s) => s.reply === 10000)).toHaveLength(onMute.length);
  });

  it("chains text → voice → speech → lip-sync: POST /voices prepares on one machine, each other one prepares once", async () => {
    const f = await startFleet();
    const recording = join(f.dir, "lin-speaking.wav");
    await makeAudio(recording, { seconds: 3 });
    const form = new FormData();
    form.set("audio", new Blob([await readFile(recording)]), "lin-speaking.wav");
    form.set("name", "Lin, by POST /voices");
    const made = await f.call("/voices", { method: "POST", body: form });
    const voice = (await made.json()) as { voice_id: string; reference_text: string | null };
    expect(made.status).toBe(201);
    expect(voice.reference_text).toBeTruthy();
    const preparesOf = (name: string) => (f.box(name).tts as TtsEmulator).prepares.length;
    // Made on exactly one machine: the voice exists once a machine has prepared it.
    expect(preparesOf("speak-a") + preparesOf("speak-b")).toBe(1);

    const ids = [];
    for (const line of ["第一句。", "第二句很长，用来让两台机器都忙起来。", "第三句。", "第四句。"])
      ids.push(await f.submit({ text: line, voice_id: voice.voice_id }));
    const ranOn = new Set<string>();
    for (const id of ids) {
      const done = await f.finished(id);
      expect(done.error_message).toBeNull();
      expect(done.status).toBe("completed");
      ranOn.add(done.machine ?? "");
      // The spoken audio is the task's: a WAV as long as the video made from it.
      const wav = await f.call(`/tasks/${id}/audio`);
      expect(wav.status).toBe(200);
      const path = join(f.dir, `${id}.wav`);
      await writeFile(path, Buffer.from(await wav.arrayBuffer()));
      expect(Math.abs((await probe(path)).durationSec - done.audio_duration)).toBeLessThan(0.05);
    }
    expect([...ranOn].sort()).toEqual(["speak-a", "speak-b"]);
    // The voice's recording and the same language: each machine prepared it once, whoever made it.
    expect(preparesOf("speak-a")).toBe(1);
    expect(preparesOf("speak-b")).toBe(1);
    expect(f.box("mute-c").heygem.submits).toHaveLength(0);
  });

  it("moves a task to the other machine when one machine's voice service is down, and fails bad text at once", async () => {
    const f = await startFleet();
    await (f.box("speak-a").tts as TtsEmulator).stop();
    const ids = [];
    for (const line of ["第一句。", "第二句。", "第三句。"])
      ids.push(await f.submit({ text: line, voice_id: f.voice.id }));
    for (const id of ids) {
      const done = await f.finished(id);
      expect(done.error_message).toBeNull();
      expect(done).toMatchObject({ status: "completed", machine: "speak-b" });
    }
    // At least one was tried on speak-a first: a machine failure, queued again, then done on speak-b.
    const tried = await Promise.all(ids.map(async (id) => (await f.events(id)).map((e) => e.type)));
    expect(tried.some((types) => types.includes("requeued"))).toBe(true);

    const empty = await f.submit({ text: "。。。！" });
    const failed = await f.finished(empty);
    expect(failed).toMatchObject({ status: "failed", error_kind: "input", attempts: 1 });
  });

  it("says in the events when no machine up can speak: once, not per probe, and in a new task's queued event", async () => {
    const f = await startFleet({ manual: true });
    // Both speaking machines busy with a text task each (their HeyGem renders wait for advance()),
    // so a third waits for a free slot.
    const busy = [await f.submit({ text: "一。" }), await f.submit({ text: "二。" })];
    await until(
      async () => (await Promise.all(busy.map(f.task))).every((t) => t.status === "processing"),
      10_000,
    );
    const waiting = await f.submit({ text: "三。" });
    for (const name of ["speak-a", "speak-b"])
      expect((await f.call(`/machines/${name}/drain`, { method: "POST" })).status).toBe(200);
    const note = "waiting: none of the 1 machine up can speak text (capabilities.tts)";
    await until(async () => (await f.events(waiting)).some((e) => e.type === "waiting"), 10_000);
    const later = await f.submit({ text: "四。" });
    const queued = (await f.events(later)).find((e) => e.type === "queued");
    expect(queued?.message).toBe(note);
    // Several probes later (every 100 ms), still one note each; the mute machine took neither.
    const seen = (await (await f.call("/machines")).json()) as { machines: { last_seen: string }[] };
    await until(async () => {
      const now = (await (await f.call("/machines")).json()) as { machines: { last_seen: string }[] };
      return now.machines.every(
        (m, i) => Date.parse(m.last_seen) > Date.parse(seen.machines[i]?.last_seen ?? "") + 300,
      );
    }, 10_000);
    for (const id of [waiting, later]) {
      const notes = (await f.events(id)).filter((e) => e.type === "waiting");
      expect(notes.map((e) => e.message)).toEqual(id === waiting ? [note] : []);
      expect((await f.task(id)).status).toBe("pending");
    }
    // Back to work: the waiting tasks run on the speaking machines.
    for (const name of ["speak-a", "speak-b"]) await f.call(`/machines/${name}/resume`, { method: "POST" });
    const finishAll = setInterval(() => {
      for (const b of f.boxes) if (b.heygem.running) void b.heygem.advance().catch(() => undefined);
    }, 20);
    try {
      for (const id of [...busy, waiting, later]) expect((await f.finished(id)).status).toBe("completed");
    } finally {
      clearInterval(finishAll);
    }
    expect(f.box("mute-c").heygem.submits).toHaveLength(0);
  });

  it("refuses a voice_id of no voice, and text when no machine can speak", async () => {
    const f = await startFleet();
    const res = await f.call("/tasks", {
      method: "POST",
      body: await taskForm({ text: "你好", voice_id: "nobody", video: { path: f.video } }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "UNKNOWN_VOICE", field: "voice_id" });

    // A fleet of the mute machine alone.
    const mute = join(f.dir, "mute.json");
    const { machines } = JSON.parse(await readFile(join(f.dir, "machines.json"), "utf8")) as {
      machines: { name: string }[];
    };
    await writeFile(mute, JSON.stringify({ machines: machines.filter((m) => m.name === "mute-c") }));
    const alone = await startTestGateway({ config: mute }, join(f.dir, "alone"));
    cleanups.push(() => alone.close());
    await until(async () => {
      const list = (await (await fetch(`${alone.url}/machines`)).json()) as { machines: { state: string }[] };
      return list.machines[0]?.state === "up";
    }, 10_000);
    for (const fields of [{ text: "你好" }, { text: "你好", voice_id: "lin" }]) {
      const refused = await fetch(`${alone.url}/tasks`, {
        method: "POST",
        body: await taskForm({ ...fields, video: { path: f.video } }),
      });
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ error: "NO_TTS_MACHINE", field: "text" });
    }
  });
});
