import { type Dispatcher, request } from "undici";
import { describeNetworkError } from "../../http/network-error.js";

/** The container did not answer in time, or at all: the machine's fault. */
export class FishSpeechUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FishSpeechUnreachableError";
  }
}

/**
 * The server answered HTTP 200 with `{"code": -1, "msg": …}` (heygem-tts-contract.md): it
 * refused. Whose fault that is depends on `msg` (fish-speech-failures.ts).
 */
export class FishSpeechRefusedError extends Error {
  constructor(
    readonly endpoint: string,
    readonly msg: string,
  ) {
    super(`${endpoint} refused: ${msg || "(no message)"}`);
    this.name = "FishSpeechRefusedError";
  }
}

/** HTTP 400 to `/v1/invoke`: the text is longer than the server's `max_text_length`. */
export class FishSpeechTextTooLongError extends Error {
  constructor(
    readonly chars: number,
    detail: string,
  ) {
    super(`the voice service refused ${chars} characters as too long: ${detail}`);
    this.name = "FishSpeechTextTooLongError";
  }
}

/** Any other answer that is not what the contract promises (a 5xx, a body that is no audio). */
export class FishSpeechProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FishSpeechProtocolError";
  }
}

export interface PreprocessRequest {
  /** Relative to the container's /code/data (the host folder given to `--tts`). */
  readonly referenceAudio: string;
  /** `wav`, `mp3` or `flac`: without a dot (a README's ".wav" fails validation). */
  readonly format: string;
  readonly lang: string;
}

/** A prepared voice: with several segments, both lists have one entry per segment. */
export interface PreparedReference {
  readonly texts: readonly string[];
  readonly urls: readonly string[];
}

export interface InvokeRequest {
  readonly text: string;
  readonly reference?: PreparedReference | undefined;
  readonly temperature?: number | undefined;
  readonly top_p?: number | undefined;
  readonly chunk_length?: number | undefined;
  readonly repetition_penalty?: number | undefined;
}

export interface FishSpeechApiOptions {
  /** e.g. http://127.0.0.1:18180 */
  readonly baseUrl: string;
  /** Bound on a preprocess (speech recognition of the reference) and on a health check. */
  readonly prepareTimeoutMs: number;
  /** Bound on one `/v1/invoke` (one part of a split text). */
  readonly invokeTimeoutMs: number;
  readonly dispatcher?: Dispatcher;
}

/** `|||` joins a voice's segments in both directions (heygem-tts-contract.md). */
export const LIST_SEPARATOR = "|||";

/** The HTTP client of one fish-speech container (heygem-tts-contract.md). Every call has a deadline. */
export class FishSpeechApi {
  readonly baseUrl: string;

  constructor(private readonly options: FishSpeechApiOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
  }

  async health(signal?: AbortSignal): Promise<boolean> {
    const reply = await this.call("/v1/health", {}, this.options.prepareTimeoutMs, signal);
    return reply.status === 200;
  }

  async preprocess(req: PreprocessRequest, signal?: AbortSignal): Promise<PreparedReference> {
    const endpoint = "/v1/preprocess_and_tran";
    const body = {
      format: req.format.replace(/^\./, ""),
      reference_audio: req.referenceAudio,
      lang: req.lang,
    };
    const reply = await this.call(endpoint, body, this.options.prepareTimeoutMs, signal);
    const json = this.json(endpoint, reply);
    if (json.code !== 0) throw new FishSpeechRefusedError(endpoint, words(json.msg));
    const texts = splitList(json.reference_audio_text);
    const urls = splitList(json.asr_format_audio_url);
    if (urls.length === 0 || urls.some((u) => u === "")) {
      throw new FishSpeechProtocolError(`${endpoint} answered success without asr_format_audio_url`);
    }
    return { texts, urls };
  }

  /** The audio of `req.text` as WAV bytes (read as binary: as text they are noise, #404). */
  async invoke(req: InvokeRequest, signal?: AbortSignal): Promise<Buffer> {
    const endpoint = "/v1/invoke";
    const body = {
      text: req.text,
      format: "wav",
      streaming: false,
      normalize: true,
      ...(req.reference
        ? {
            reference_audio: req.reference.urls.join(LIST_SEPARATOR),
            reference_text: req.reference.texts.join(LIST_SEPARATOR),
          }
        : {}),
      ...(req.temperature === undefined ? {} : { temperature: req.temperature }),
      ...(req.top_p === undefined ? {} : { top_p: req.top_p }),
      ...(req.chunk_length === undefined ? {} : { chunk_length: req.chunk_length }),
      ...(req.repetition_penalty === undefined ? {} : { repetition_penalty: req.repetition_penalty }),
    };
    const reply = await this.call(endpoint, body, this.options.invokeTimeoutMs, signal);
    if (reply.status === 400) {
      throw new FishSpeechTextTooLongError([...req.text].length, reply.bytes.toString("utf8").slice(0, 200));
    }
    // A refusal comes as JSON with HTTP 200, like the preprocess's; audio never starts with "{".
    if (reply.status === 200 && reply.bytes.subarray(0, 1).toString() === "{") {
      throw new FishSpeechRefusedError(endpoint, words(this.json(endpoint, reply).msg));
    }
    if (reply.status !== 200) {
      throw new FishSpeechProtocolError(
        `${endpoint} answered HTTP ${reply.status}: ${reply.bytes.toString("utf8").slice(0, 200)}`,
      );
    }
    if (reply.bytes.length < 44 || reply.bytes.toString("ascii", 0, 4) !== "RIFF") {
      throw new FishSpeechProtocolError(
        `${endpoint} answered ${reply.bytes.length} bytes that are not a WAV file`,
      );
    }
    return reply.bytes;
  }

  private json(
    endpoint: string,
    reply: { status: number; bytes: Buffer },
  ): { code: unknown; msg?: unknown; [k: string]: unknown } {
    let parsed: unknown;
    try {
      parsed = JSON.parse(reply.bytes.toString("utf8"));
    } catch {
      throw new FishSpeechProtocolError(
        `${endpoint} answered HTTP ${reply.status} with no JSON: ${reply.bytes.toString("utf8").slice(0, 200)}`,
      );
    }
    if (typeof parsed !== "object" || parsed === null || !("code" in parsed)) {
      throw new FishSpeechProtocolError(`${endpoint} answered JSON without a code`);
    }
    return parsed as { code: unknown };
  }

  private async call(
    path: string,
    body: unknown,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; bytes: Buffer }> {
    const where = `POST ${this.baseUrl}${path}`;
    const deadline = AbortSignal.timeout(timeoutMs);
    const both = signal ? AbortSignal.any([signal, deadline]) : deadline;
    try {
      const res = await request(`${this.baseUrl}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        signal: both,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
      });
      return { status: res.statusCode, bytes: Buffer.from(await res.body.arrayBuffer()) };
    } catch (err) {
      if (signal?.aborted) throw err;
      if (deadline.aborted)
        throw new FishSpeechUnreachableError(`${where}: no answer within ${timeoutMs} ms`);
      throw new FishSpeechUnreachableError(`${where}: ${describeNetworkError(err)}`);
    }
  }
}

function words(value: unknown): string {
  return typeof value === "string"
    ? value
    : value === undefined || value === null
      ? ""
      : JSON.stringify(value);
}

function splitList(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v) => words(v));
  const text = words(value);
  return text === "" ? [] : text.split(LIST_SEPARATOR);
}
