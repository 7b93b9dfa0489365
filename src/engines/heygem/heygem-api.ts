import { type Static, Type } from "@sinclair/typebox";
import { type Dispatcher, request } from "undici";
import type { ErrorCode } from "../../error-codes.js";
import { describeNetworkError } from "../../http/network-error.js";
import { ReplySchema } from "../../http/reply-schema.js";
import type { JobOptions } from "../../protocol/schemas.js";

/** HeyGem's reply codes (heygem-contract.md, "POST /easy/submit" and "GET /easy/query"). */
export const HEYGEM_OK = 10000;
export const HEYGEM_BUSY = 10001;
export const HEYGEM_LOCK_ERROR = 10003;
export const HEYGEM_NO_SUCH_TASK = 10004;

/**
 * The container did not answer: refused, reset, timed out. (One that answers something other than
 * a HeyGem reply is met with a ProtocolError, which the callers treat alike: the instance's fault.)
 */
export class HeygemUnreachableError extends Error {
  readonly code = "HEYGEM_UNREACHABLE" satisfies ErrorCode;

  constructor(message: string) {
    super(message);
    this.name = "HeygemUnreachableError";
  }
}

export interface SubmitRequest {
  readonly code: string;
  /** Bare file names: the container resolves them against /code/data/temp. */
  readonly audioName: string;
  readonly videoName: string;
  readonly options: JobOptions;
}

export type SubmitReply =
  | { readonly kind: "accepted" }
  /** 10001, and 10003 (lock error): nothing was queued; try again later. */
  | { readonly kind: "busy"; readonly code: number; readonly msg: string }
  /** 10002 (missing parameter), 9999 (exception) or a code this client does not know. */
  | { readonly kind: "refused"; readonly code: number; readonly msg: string };

export type QueryReply =
  | {
      readonly kind: "task";
      /** 1 running, 2 succeeded, 3 failed; there is no queued state. */
      readonly status: number;
      readonly progress: number;
      readonly msg: string;
      /** For status 2: the result's path relative to /code/data/temp, e.g. "/<code>-r.mp4". */
      readonly result: string;
    }
  /** 10004: the container does not know the code (never submitted, already read, or restarted). */
  | { readonly kind: "gone" }
  | { readonly kind: "error"; readonly code: number; readonly msg: string };

// Only the fields this client reads; newer builds add more (cost, width…), which are tolerated.
// The contract's leniency is kept: `msg` may be an integer (10000 on accept), `progress` a string.
const Words = Type.Union([Type.String(), Type.Number(), Type.Null()]);
const Envelope = Type.Object({
  code: Type.Integer(),
  msg: Type.Optional(Words),
  data: Type.Optional(Type.Unknown()),
});
/** A query's reply with code 10000: the envelope again, now with the task's state in `data`. */
const TaskEnvelope = Type.Object({
  data: Type.Object({
    status: Type.Integer(),
    progress: Type.Optional(Type.Union([Type.Number(), Type.String(), Type.Null()])),
    msg: Type.Optional(Words),
    result: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  }),
});

// Compiled once, at load; every reply passes through them before this client reads a field.
const EnvelopeReply = new ReplySchema(Envelope, "a HeyGem reply");
const TaskReply = new ReplySchema(TaskEnvelope, "a HeyGem task's state");

/** A reply that passed the envelope's check, with what is needed to check the rest of it. */
interface Reply {
  readonly envelope: Static<typeof Envelope>;
  readonly endpoint: string;
  readonly status: number;
  readonly body: string;
}

export interface HeygemApiOptions {
  /** e.g. http://127.0.0.1:8383 */
  readonly baseUrl: string;
  /** Bound on one call; the container answers both routes at once when it is healthy. */
  readonly requestTimeoutMs: number;
  readonly dispatcher?: Dispatcher;
}

/** The HTTP client of one HeyGem gen-video container: `/easy/submit` and `/easy/query`. */
export class HeygemApi {
  readonly baseUrl: string;

  constructor(private readonly options: HeygemApiOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
  }

  async submit(req: SubmitRequest, signal?: AbortSignal): Promise<SubmitReply> {
    const body = {
      audio_url: req.audioName,
      video_url: req.videoName,
      code: req.code,
      chaofen: req.options.chaofen,
      watermark_switch: req.options.watermark_switch,
      pn: req.options.pn,
    };
    const { envelope } = await this.call("POST", "/easy/submit", JSON.stringify(body), signal);
    const msg = text(envelope.msg);
    if (envelope.code === HEYGEM_OK) return { kind: "accepted" };
    if (envelope.code === HEYGEM_BUSY || envelope.code === HEYGEM_LOCK_ERROR) {
      return { kind: "busy", code: envelope.code, msg };
    }
    return { kind: "refused", code: envelope.code, msg };
  }

  async query(code: string, signal?: AbortSignal): Promise<QueryReply> {
    const reply = await this.call("GET", `/easy/query?code=${encodeURIComponent(code)}`, undefined, signal);
    const { envelope } = reply;
    if (envelope.code === HEYGEM_NO_SUCH_TASK) return { kind: "gone" };
    if (envelope.code !== HEYGEM_OK) return { kind: "error", code: envelope.code, msg: text(envelope.msg) };
    const { data } = TaskReply.decode(reply.endpoint, reply.status, envelope, reply.body);
    const progress = Number(data.progress ?? 0);
    return {
      kind: "task",
      status: data.status,
      progress: Number.isFinite(progress) ? progress : 0,
      msg: text(data.msg),
      result: data.result ?? "",
    };
  }

  private async call(
    method: "GET" | "POST",
    path: string,
    body: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Reply> {
    const where = `${method} ${this.baseUrl}${path}`;
    let raw: string;
    let status: number;
    try {
      const res = await request(`${this.baseUrl}${path}`, {
        method,
        body: body ?? null,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        signal: signal ?? null,
        headersTimeout: this.options.requestTimeoutMs,
        bodyTimeout: this.options.requestTimeoutMs,
        ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
      });
      status = res.statusCode;
      raw = await res.body.text();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new HeygemUnreachableError(`${where}: ${describeNetworkError(err)}`);
    }
    // Flask serves json.dumps(...) strings as text/html (heygem-contract.md, "Replies"), so the
    // Content-Type says nothing: the body is parsed as JSON whatever it claims to be.
    return { envelope: EnvelopeReply.parse(where, status, raw), endpoint: where, status, body: raw };
  }
}

/** `msg` is a string in most replies but the integer 10000 in the submit's (heygem-contract.md). */
function text(value: string | number | null | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}
