import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FishSpeechSpeaker } from "../../../src/engines/speech/fish-speech-speaker.js";
import type { SpeakJob, SpeakVoice } from "../../../src/engines/speech/speaker.js";
import { parseWav } from "../../../src/engines/speech/wav.js";
import { EngineError } from "../../../src/errors.js";
import { makeAudio } from "../../helpers/media.js";
import { TtsEmulator } from "../../helpers/tts-emulator.js";
import { sha256 } from "../../worker/harness.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mh-speaker-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function emulator(): Promise<TtsEmulator> {
  const emu = await TtsEmulator.start();
  cleanups.push(() => emu.close());
  return emu;
}

async function voice(dir: string): Promise<SpeakVoice> {
  const referencePath = join(dir, "reference.wav");
  await makeAudio(referencePath, { seconds: 1 });
  return { id: "v1", referencePath, referenceSha256: sha256(await readFile(referencePath)) };
}

async function job(text: string, v?: SpeakVoice): Promise<SpeakJob> {
  const workDir = await tempDir();
  return { id: "j", text, lang: "zh", voice: v, settings: {}, outputPath: join(workDir, "out.wav"), workDir };
}

const ctx = () => ({ signal: new AbortController().signal, onProgress: () => {} });

describe("speaking with fish-speech containers", () => {
  it("prepares a voice once per instance across jobs, and again once its folder was emptied", async () => {
    const emu = await emulator();
    const stateDir = await tempDir();
    const make = () =>
      new FishSpeechSpeaker({
        settings: { instances: [{ name: "tts", url: emu.url, dataDir: emu.dir }] },
        stateDir,
      });
    const v = await voice(await tempDir());
    const speaker = make();
    await speaker.speak(await job("你好。", v), ctx());
    await speaker.speak(await job("再见。", v), ctx());
    expect(emu.prepares).toHaveLength(1);
    // What the instance prepared is remembered in the worker's data dir, across a restart of the agent.
    await make().speak(await job("又见面了。", v), ctx());
    expect(emu.prepares).toHaveLength(1);

    await emu.emptyFolder();
    await make().speak(await job("你好。", v), ctx());
    expect(emu.prepares).toHaveLength(2);
    expect(emu.invokes).toHaveLength(4);
  });

  it("splits long text under the server's limit and joins the parts with no gap", async () => {
    const emu = await emulator();
    emu.maxTextLength = 30;
    const speaker = new FishSpeechSpeaker({
      settings: { instances: [{ name: "tts", url: emu.url, dataDir: emu.dir }] },
      stateDir: await tempDir(),
      maxChars: 60,
    });
    const sentence = "今天天气很好，我们一起去公园散步吧。";
    const text = sentence.repeat(6);
    const j = await job(text);
    await speaker.speak(j, ctx());
    // Parts of 60 characters are refused (400) by a server whose limit is 30, then halved and spoken.
    const sent = emu.invokes.map((b) => String(b.text));
    const spoken = sent.filter((part) => [...part].length <= 30);
    expect(sent.length).toBeGreaterThan(spoken.length);
    expect(spoken.length).toBeGreaterThan(1);
    expect(spoken.join("")).toBe(text);
    const audio = parseWav(await readFile(j.outputPath));
    const expected = spoken.reduce((n, part) => n + emu.samplesFor(part), 0);
    expect(audio.samples.length / 2).toBe(expected);
  });

  it("sends one request at a time to an instance, whatever the number of jobs", async () => {
    const emu = await emulator();
    const speaker = new FishSpeechSpeaker({
      settings: { instances: [{ name: "tts", url: emu.url, dataDir: emu.dir }] },
      stateDir: await tempDir(),
    });
    const v = await voice(await tempDir());
    await Promise.all(
      ["一。二。", "三。四。", "五。六。"].map(async (t) => speaker.speak(await job(t, v), ctx())),
    );
    expect(emu.invokes).toHaveLength(3);
    expect(emu.maxParallel).toBe(1);
  });

  it("fails as the input's fault for text with nothing to say, and as the machine's when ASR is down", async () => {
    const emu = await emulator();
    const speaker = new FishSpeechSpeaker({
      settings: { instances: [{ name: "tts", url: emu.url, dataDir: emu.dir }] },
      stateDir: await tempDir(),
    });
    const empty = await speaker.speak(await job("。。。"), ctx()).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(EngineError);
    expect((empty as EngineError).kind).toBe("input");
    emu.asrDown = true;
    const asr = await speaker
      .speak(await job("你好", await voice(await tempDir())), ctx())
      .catch((e: unknown) => e);
    expect((asr as EngineError).kind).toBe("machine");
    expect((asr as Error).message).toMatch(/ASR/);
  });
});
