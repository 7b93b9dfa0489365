import type { FailureKind } from "../../errors.js";

export interface FailureClass {
  readonly kind: FailureKind;
  /** The engine's words, then a plain explanation for whoever reads the task's error. */
  readonly message: string;
}

interface Rule {
  readonly pattern: RegExp;
  readonly kind: FailureKind;
  readonly explanation: string;
}

/**
 * What a task that ended with status 3 says, and whose fault that is (heygem-contract.md,
 * "Failure modes seen in the field"). An input failure fails the task at once; a machine failure
 * lets the gateway try another machine. First match wins.
 */
const RULES: readonly Rule[] = [
  {
    pattern: /存在多人脸|multiple faces|more than one face/i,
    kind: "input",
    explanation: "the template video shows more than one face; HeyGem needs exactly one clearly visible face",
  },
  {
    pattern: /未检测到人脸|没有检测到人脸|人脸检测失败|no face/i,
    kind: "input",
    explanation: "no face was found in the template video; it needs one clearly visible face",
  },
  {
    // Seen for a template whose container or codec the engine cannot decode.
    pattern: /format video error|视频格式|视频.*(读取|解码)失败/i,
    kind: "input",
    explanation: "HeyGem cannot read the template video; an H.264 (yuv420p) MP4 or MOV works",
  },
  {
    pattern: /format audio error|音频格式|音频.*(读取|解码)失败/i,
    kind: "input",
    explanation: "HeyGem cannot read the audio; mp3, wav, flac or m4a work",
  },
  {
    pattern: /invalid data found|moov atom not found|could not find codec|unsupported codec/i,
    kind: "input",
    explanation: "a media file is unreadable or truncated",
  },
  {
    // The gateway has already probed the audio, so failing to read its length means the engine
    // could not see the file: its data volume is not the folder the agent wrote into.
    pattern: /三次获取音频时长失败|获取音频时长失败/,
    kind: "machine",
    explanation:
      "HeyGem could not read the audio file the agent placed in its data folder; the container's " +
      "/code/data volume is probably not mapped to the folder given to --heygem (wrong volume mapping)",
  },
  {
    pattern: /out of memory|CUDA|显存/i,
    kind: "machine",
    explanation: "the GPU ran out of memory or is not usable inside the container",
  },
];

/**
 * Unknown messages are the machine's: another machine may well succeed, and the gateway bounds
 * the retries, whereas blaming the input by mistake would fail a good task for good.
 */
export function classifyFailure(engineMessage: string): FailureClass {
  const words = engineMessage.trim() || "(no message)";
  const rule = RULES.find((r) => r.pattern.test(words));
  if (!rule) return { kind: "machine", message: `HeyGem failed: ${words}` };
  return { kind: rule.kind, message: `HeyGem: ${words} (${rule.explanation})` };
}
