import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { type Dispatcher, request, errors as undiciErrors } from "undici";
import type { JobOptions } from "../../protocol/schemas.js";

/** HeyGem's reply codes (heygem-contract.md, "POST /easy/submit" and "GET /easy/query"). */
export const HEYGEM_OK = 10000;
export const HEYGEM_BUSY = 10001;
export const HEYGEM_LOCK_ERROR = 10003;
export const HEYGEM_NO_SUCH_TASK = 10004;

/** The container did not answer with a HeyGem reply: refused, reset, timed out, or not its JSON. */
export class HeygemUnreachableError extends Error {
  readonly code = "HEYGEM_UNREACHABLE";

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
const Envelope = Type.Object({
  code: Type.Number(),
  msg: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Null()])),
  data: Type.Optional(Type.Unknown()),
});
const TaskData = Type.Object({
  status: Type.Number(),
  progress: Type.Optional(Type.Union([Type.Number(), Type.String(), Type.Null()])),
  msg: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Null()])),
  result: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});

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
    const reply = await this.call("POST", "/easy/submit", JSON.stringify(body), signal);
    const msg = text(reply.msg);
    if (reply.code === HEYGEM_OK) return { kind: "accepted" };
    if (reply.code === HEYGEM_BUSY || reply.code === HEYGEM_LOCK_ERROR) {
      return { kind: "busy", code: reply.code, msg };
    }
    return { kind: "refused", code: reply.code, msg };
  }

  async query(code: string, signal?: AbortSignal): Promise<QueryReply> {
    const reply = await this.call("GET", `/easy/query?code=${encodeURIComponent(code)}`, undefined, signal);
    if (reply.code === HEYGEM_NO_SUCH_TASK) return { kind: "gone" };
    if (reply.code !== HEYGEM_OK) return { kind: "error", code: reply.code, msg: text(reply.msg) };
    if (!Value.Check(TaskData, reply.data)) {
      throw new HeygemUnreachableError(
        `${this.baseUrl}/easy/query: a reply without task data: ${JSON.stringify(reply).slice(0, 300)}`,
      );
    }
    const data = reply.data;
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
  ): Promise<{ code: number; msg?: string | number | null; data?: unknown }> {
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
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new HeygemUnreachableError(`${where}: HTTP ${status}, not a HeyGem reply: ${raw.slice(0, 200)}`);
    }
    if (!Value.Check(Envelope, parsed)) {
      throw new HeygemUnreachableError(`${where}: HTTP ${status}, not a HeyGem reply: ${raw.slice(0, 200)}`);
    }
    return parsed;
  }
}

/** `msg` is a string in most replies but the integer 10000 in the submit's (heygem-contract.md). */
function text(value: string | number | null | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}

function describeNetworkError(err: unknown): string {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return "timed out";
  }
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}
