import { EngineError, errorMessage } from "../../errors.js";
import {
  FishSpeechProtocolError,
  FishSpeechRefusedError,
  FishSpeechTextTooLongError,
  FishSpeechUnreachableError,
} from "./fish-speech-api.js";

/** The ASR service, or any connection of the server's own, is down: another machine may do better. */
const MACHINE_WORDS =
  /asr|10095|connect|refused|timed? ?out|unreachable|network|cuda|out of memory|显存|网络|连接/i;
/** The reference recording is missing or unreadable: the same file fails on every machine. */
const INPUT_WORDS =
  /not exist|no such file|not found|不存在|cannot (read|open|decode)|could not (read|open|decode)|invalid data|unsupported format|format error|格式|decode|empty audio|too short|no speech|未识别/i;

/**
 * Whose fault a failure of the voice service is (issue 12, "Failures are classed as in the video
 * engine"): a `code: -1` about the reference is the input's; ASR or connections down, timeouts,
 * unknown words and broken replies are the machine's, so the gateway may try another machine.
 */
export function blameSpeechFailure(err: unknown, step: "prepare" | "speak"): EngineError {
  if (err instanceof EngineError) return err;
  if (err instanceof FishSpeechUnreachableError)
    return new EngineError("machine", `voice service: ${err.message}`);
  if (err instanceof FishSpeechTextTooLongError) {
    return new EngineError("input", `the voice service cannot speak this text: ${err.message}`);
  }
  if (err instanceof FishSpeechRefusedError) {
    if (MACHINE_WORDS.test(err.msg)) {
      return new EngineError(
        "machine",
        `voice service (${step}): ${err.msg} (its speech recognition or a connection of its own is down)`,
      );
    }
    if (step === "prepare" && INPUT_WORDS.test(err.msg)) {
      return new EngineError(
        "input",
        `the voice's reference recording: ${err.msg} (it is missing or unreadable)`,
      );
    }
    return new EngineError("machine", `voice service (${step}): ${err.msg}`);
  }
  if (err instanceof FishSpeechProtocolError)
    return new EngineError("machine", `voice service: ${err.message}`);
  return new EngineError("machine", `voice service (${step}): ${errorMessage(err)}`);
}
