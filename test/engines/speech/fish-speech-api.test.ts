import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  FishSpeechApi,
  FishSpeechRefusedError,
  FishSpeechTextTooLongError,
  FishSpeechUnreachableError,
} from "../../../src/engines/speech/fish-speech-api.js";
import { blameSpeechFailure } from "../../../src/engines/speech/fish-speech-failures.js";
import { parseWav } from "../../../src/engines/speech/wav.js";
import { EngineError } from "../../../src/errors.js";
import { makeAudio } from "../../helpers/media.js";
import { TtsEmulator } from "../../helpers/tts-emulator.js";

let emu: TtsEmulator;
afterEach(async () => {
  await emu?.close();
});

function client(timeoutMs = 5_000) {
  return new FishSpeechApi({ baseUrl: emu.url, prepareTimeoutMs: timeoutMs, invokeTimeoutMs: timeoutMs });
}

async function reference(name = "ref.wav"): Promise<string> {
  await mkdir(join(emu.dir, "origin_audio"), { recursive: true });
  await makeAudio(join(emu.dir, "origin_audio", name), { seconds: 1 });
  return `origin_audio/${name}`;
}

function kindOf(err: unknown, step: "prepare" | "speak"): string {
  const blamed = blameSpeechFailure(err, step);
  expect(blamed).toBeInstanceOf(EngineError);
  return blamed.kind;
}

describe("the fish-speech client against the container's emulator", () => {
  it("prepares a voice, reading |||-joined lists, and speaks binary WAV bytes", async () => {
    emu = await TtsEmulator.start();
    emu.segments = 2;
    const api = client();
    const prepared = await api.preprocess({ referenceAudio: await reference(), format: "wav", lang: "zh" });
    expect(prepared.urls).toHaveLength(2);
    expect(prepared.texts).toEqual(["参考文本0", "参考文本1"]);
    const wav = await api.invoke({ text: "你好世界", reference: prepared, top_p: 0.5 });
    const audio = parseWav(wav);
    expect(audio.samples.length / 2).toBe(emu.samplesFor("你好世界"));
    expect(emu.invokes[0]).toMatchObject({ format: "wav", top_p: 0.5 });
    expect(String(emu.invokes[0]?.reference_audio).split("|||")).toHaveLength(2);
  });

  it("sends the format without a dot (the container refuses '.wav')", async () => {
    emu = await TtsEmulator.start();
    const path = await reference();
    const raw = await fetch(`${emu.url}/v1/preprocess_and_tran`, {
      method: "POST",
      body: JSON.stringify({ format: ".wav", reference_audio: path, lang: "zh" }),
    });
    expect(raw.status).toBe(200);
    expect(((await raw.json()) as { code: number }).code).toBe(-1);
    await expect(
      client().preprocess({ referenceAudio: path, format: ".wav", lang: "zh" }),
    ).resolves.toBeDefined();
    expect(emu.prepares.at(-1)?.format).toBe("wav");
  });

  it("classes a missing reference as the input's fault", async () => {
    emu = await TtsEmulator.start();
    const err = await client()
      .preprocess({ referenceAudio: "origin_audio/nothing.wav", format: "wav", lang: "zh" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FishSpeechRefusedError);
    expect((err as FishSpeechRefusedError).msg).toBe("file not exists");
    expect(kindOf(err, "prepare")).toBe("input");
  });

  it("classes ASR down (HTTP 200, code -1) as the machine's fault", async () => {
    emu = await TtsEmulator.start();
    emu.asrDown = true;
    const err = await client()
      .preprocess({ referenceAudio: await reference(), format: "wav", lang: "zh" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FishSpeechRefusedError);
    expect(kindOf(err, "prepare")).toBe("machine");
  });

  it("reads HTTP 400 as text too long", async () => {
    emu = await TtsEmulator.start();
    emu.maxTextLength = 10;
    const err = await client()
      .invoke({ text: "这是一段超过十个字符的很长的文字" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FishSpeechTextTooLongError);
  });

  it("classes a service that is down, and one past its deadline, as the machine's fault", async () => {
    emu = await TtsEmulator.start();
    await emu.stop();
    const down = await client()
      .invoke({ text: "你好" })
      .catch((e: unknown) => e);
    expect(down).toBeInstanceOf(FishSpeechUnreachableError);
    expect(kindOf(down, "speak")).toBe("machine");

    await emu.start();
    emu.hangInvoke = true;
    const late = await client(300)
      .invoke({ text: "你好" })
      .catch((e: unknown) => e);
    expect(late).toBeInstanceOf(FishSpeechUnreachableError);
    expect((late as Error).message).toMatch(/within 300 ms/);
    expect(kindOf(late, "speak")).toBe("machine");
  });
});
