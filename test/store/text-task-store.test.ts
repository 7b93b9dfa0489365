import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import { estimateSpeechSeconds, taskNeed } from "../../src/store/task-speech.js";
import { VoiceStore } from "../../src/store/voice-store.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { describeStores, newTask, openTestStore, type TestStore } from "../helpers/store.js";

const speech = { text: "你好，欢迎。", lang: "zh", settings: { top_p: 0.6 } };

/** Issue 12: a text task's rows, from creation (no audio yet) to completion (the spoken audio kept). */
describeStores("text tasks in the store", (backend) => {
  let dir: string;
  let s: TestStore;
  let voices: VoiceStore;

  beforeEach(async () => {
    dir = await tempDir("mh-store-text-");
    s = await openTestStore(dir, undefined, backend);
    voices = new VoiceStore(s.db);
    await voices.create({
      id: "v1",
      owner: null,
      name: null,
      lang: "zh",
      sha256: "c".repeat(64),
      fileName: "ref.wav",
      bytes: 100,
      duration: 3,
      referenceText: null,
      avatarId: null,
    });
  });

  afterEach(async () => {
    await s.close();
    await removeDir(dir);
  });

  it("records the speech and voice, no audio file and an estimated duration, and says it is a text task", async () => {
    const task = await s.tasks.createTask(newTask({ audio: null, speech, voiceId: "v1" }));
    expect(task).toMatchObject({ audio_sha256: "", audio_name: "", audio_bytes: 0, voice_id: "v1" });
    expect(JSON.parse(task.speech ?? "null")).toEqual(speech);
    expect(task.audio_duration).toBe(estimateSpeechSeconds(speech.text));
    expect(taskNeed(task)).toBe("voice_clone");
    const created = (await s.tasks.listEvents(task.id)).find((e) => e.type === "created");
    expect(created?.message).toMatch(
      /^text task: 6 characters in zh in voice v1, about 1\.\d\d s once spoken/,
    );
  });

  it("refuses a voice deleted before the task's transaction, and a task with both or neither input", async () => {
    const refused = s.tasks.createTask(newTask({ audio: null, speech, voiceId: "gone" }));
    await expect(refused).rejects.toBeInstanceOf(InputError);
    await expect(refused).rejects.toMatchObject({ code: "UNKNOWN_VOICE", field: "voice_id" });
    await expect(s.tasks.createTask(newTask({ speech }))).rejects.toThrow(TypeError);
    await expect(s.tasks.createTask(newTask({ audio: null }))).rejects.toThrow(TypeError);
    expect((await s.tasks.listTasks({ limit: 10, offset: 0 })).total).toBe(0);
  });

  it("stores the spoken audio in the transaction that completes the task", async () => {
    const task = await s.tasks.createTask(newTask({ audio: null, speech }));
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    const spoken = { sha256: "d".repeat(64), name: "speech.wav", bytes: 64_044, duration: 2.001 };
    const done = await s.tasks.completeAttempt(
      task.id,
      "att-1",
      { sha256: "e".repeat(64), bytes: 9 },
      4,
      spoken,
    );
    expect(done).toMatchObject({
      status: "completed",
      audio_sha256: spoken.sha256,
      audio_name: "speech.wav",
      audio_bytes: spoken.bytes,
      audio_duration: spoken.duration,
    });
    const completed = (await s.tasks.listEvents(task.id)).at(-1);
    expect(completed?.message).toBe("result 9 bytes; spoken audio 2.00 s, 64044 bytes");
  });

  it("shows pending tasks to a fleet only as far as it can take them, in queue order", async () => {
    const audio = await s.tasks.createTask(newTask());
    const text = await s.tasks.createTask(newTask({ audio: null, speech, priority: 5 }));
    const voiced = await s.tasks.createTask(newTask({ audio: null, speech, voiceId: "v1", priority: 9 }));
    const ids = async (upTo: Parameters<typeof s.tasks.pendingTasks>[1]) =>
      (await s.tasks.pendingTasks(10, upTo)).map((t) => t.id);
    expect(await ids("lipsync")).toEqual([audio.id]);
    expect(await ids("tts")).toEqual([text.id, audio.id]);
    expect(await ids("voice_clone")).toEqual([voiced.id, text.id, audio.id]);
    expect(await s.tasks.pendingTaskIds("lipsync")).toEqual([audio.id]);
    expect(await s.tasks.pendingTaskIds("tts")).toEqual([text.id]);
    expect(await s.tasks.pendingTaskIds("voice_clone")).toEqual([voiced.id]);
    expect((await s.tasks.pendingTaskIds()).sort()).toEqual([audio.id, text.id, voiced.id].sort());
  });

  it("logs a new step at the same progress when its message is new (speech ends where lipsync starts)", async () => {
    const task = await s.tasks.createTask(newTask({ audio: null, speech }));
    await s.tasks.startAttempt(task.id, "att-1", "gpu-1");
    await s.tasks.recordProgress(task.id, "att-1", 0, "speech", true);
    await s.tasks.recordProgress(task.id, "att-1", 30, "speech: 1.2 s spoken", true);
    await s.tasks.recordProgress(task.id, "att-1", 30, "lipsync", true);
    await s.tasks.recordProgress(task.id, "att-1", 30, "lipsync", true);
    const steps = (await s.tasks.listEvents(task.id)).filter((e) => e.type === "progress");
    expect(steps.map((e) => [e.progress, e.message])).toEqual([
      [0, "speech"],
      [30, "speech: 1.2 s spoken"],
      [30, "lipsync"],
    ]);
  });
});

describe("estimateSpeechSeconds", () => {
  it("grows with the text: about 4 Chinese characters or 2.5 English words a second", () => {
    expect(estimateSpeechSeconds("你好")).toBe(0.5);
    expect(estimateSpeechSeconds("字".repeat(40))).toBe(10);
    expect(estimateSpeechSeconds("one two three four five six seven eight nine ten")).toBe(4);
    expect(estimateSpeechSeconds("你好。Hello, world!")).toBeCloseTo(0.5 + 0.8 + 0.6, 5);
    expect(estimateSpeechSeconds("字".repeat(20_000))).toBe(5000);
  });
});
