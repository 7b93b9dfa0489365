import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { Agent, type Dispatcher, request } from "undici";
import { type ErrorCode, failureKindOf } from "../error-codes.js";
import { excerpt, type FailureKind, ProtocolError } from "../errors.js";
import { describeNetworkError, networkErrorCode } from "../http/network-error.js";
import { ReplySchema } from "../http/reply-schema.js";
import { readChunkFor } from "../read-chunk.js";
import {
  bearer,
  ErrorBody,
  Health,
  JobView,
  PreparedVoiceView,
  type PutJobBody,
  type PutVoiceBody,
  StoredBlob,
  TOKEN_HEADER,
  VOICE_PREPARE_TIMEOUT_MS,
} from "./schemas.js";

/**
 * The worker answered, but with an error status. `code` is its body's `error`, a code of the
 * catalogue (error-codes.ts), or `HTTP_<status>` when the body was not an error body (a proxy's page).
 */
export class WorkerHttpError extends Error {
  /** Whose fault, as the catalogue says for the code; `machine` where it says nothing. */
  readonly kind: FailureKind;

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "WorkerHttpError";
    this.kind = failureKindOf(code) ?? "machine";
  }
}

/** Whether `err` is the worker's answer with this code, e.g. `isWorkerError(err, ERROR_CODES.BLOB_MISSING)`. */
export function isWorkerError(err: unknown, expected: { readonly code: ErrorCode }): err is WorkerHttpError {
  return err instanceof WorkerHttpError && err.code === expected.code;
}

/** The worker could not be reached at all (refused, reset, timed out). */
export class WorkerUnreachableError extends Error {
  readonly code = "WORKER_UNREACHABLE" satisfies ErrorCode;

  constructor(
    message: string,
    /**
     * The machine's host refused the connection at once: it is up, and nothing listens on the
     * port (the agent stopped, or restarts). Asking again costs nothing (fleet.ts probes it so).
     */
    readonly refused = false,
  ) {
    super(message);
    this.name = "WorkerUnreachableError";
  }
}

export interface WorkerClientOptions {
  baseUrl: string;
  token?: string | undefined;
  /** Bound on calls that should answer at once; long-polls add their wait to it. */
  requestTimeoutMs: number;
  dispatcher?: Dispatcher;
}

const sharedAgent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });

// Every answer of the /v1 API is checked against its schema here, at the boundary; a worker that
// answers something else (another service on the port, a proxy's page, a broken build) is met
// with a ProtocolError, which ends an attempt as the machine's fault like any other error.
const HealthReply = new ReplySchema(Health, "a worker's health");
const JobReply = new ReplySchema(JobView, "a worker's job view");
const BlobReply = new ReplySchema(StoredBlob, "a worker's blob answer");
const ErrorReply = new ReplySchema(ErrorBody, "a worker's error body");
const VoiceReply = new ReplySchema(PreparedVoiceView, "a worker's voice answer");

/** An answer read to its end. */
interface Answer {
  /** e.g. `GET http://10.0.0.5:8000/v1/health`, for errors. */
  readonly endpoint: string;
  readonly status: number;
  readonly body: string;
}

/** The gateway's side of the /v1 worker protocol (design.md, "Worker protocol"). */
export class WorkerClient {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly dispatcher: Dispatcher;

  constructor(private readonly options: WorkerClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/$/, "");
    this.headers = options.token ? { [TOKEN_HEADER]: bearer(options.token) } : {};
    this.dispatcher = options.dispatcher ?? sharedAgent;
  }

  async health(signal?: AbortSignal): Promise<Health> {
    const answer = await this.answer("GET", "/v1/health", { signal });
    return HealthReply.parse(answer.endpoint, answer.status, answer.body);
  }

  async hasBlob(sha256: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.call("HEAD", `/v1/blobs/${sha256}`, { signal, allow404: true });
    await res.body.dump();
    return res.statusCode === 200;
  }

  /** Streams a file to the worker's blob cache; the worker checks the hash. */
  async putBlob(sha256: string, path: string, bytes: number, signal?: AbortSignal): Promise<void> {
    const answer = await this.answer("PUT", `/v1/blobs/${sha256}`, {
      signal,
      body: createReadStream(path, { highWaterMark: readChunkFor(bytes) }),
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes) },
      // A big template over a slow link takes as long as it takes; only a stalled body times out.
      noTimeout: true,
    });
    const stored = BlobReply.parse(answer.endpoint, answer.status, answer.body);
    if (stored.sha256 !== sha256) {
      throw new ProtocolError(
        answer.endpoint,
        answer.status,
        `/sha256: ${stored.sha256}`,
        answer.body,
        "the blob it was sent",
      );
    }
  }

  /**
   * Streams content whose hash is not known yet; the worker hashes it and answers with it, and
   * with whether it is new there (`created`) or was already held.
   */
  async postBlob(
    body: Readable,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number; created: boolean }> {
    const answer = await this.answer("POST", "/v1/blobs", {
      signal,
      body,
      headers: { "content-type": "application/octet-stream" },
      noTimeout: true,
    });
    const stored = BlobReply.parse(answer.endpoint, answer.status, answer.body);
    return { sha256: stored.sha256, bytes: stored.bytes, created: answer.status === 201 };
  }

  async deleteBlob(sha256: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call("DELETE", `/v1/blobs/${sha256}`, { signal, allow404: true });
    await res.body.dump();
  }

  /** Idempotent: the same id answers with the job that already exists. */
  async putJob(id: string, body: PutJobBody, signal?: AbortSignal): Promise<JobView> {
    const answer = await this.answer("PUT", `/v1/jobs/${encodeURIComponent(id)}`, {
      signal,
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    return jobView(id, answer);
  }

  /**
   * Makes a voice usable on the worker (`PUT /v1/voices/{id}`): slow, since the voice service
   * listens to the whole reference, so it may take up to the worker's own deadline.
   */
  async putVoice(id: string, body: PutVoiceBody, signal?: AbortSignal): Promise<PreparedVoiceView> {
    const answer = await this.answer("PUT", `/v1/voices/${encodeURIComponent(id)}`, {
      signal,
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
      extraTimeoutMs: VOICE_PREPARE_TIMEOUT_MS,
    });
    return askedAbout(VoiceReply, id, answer, "the voice asked about");
  }

  /** undefined when the worker does not know the job (it restarted without it, or it expired). */
  async getJob(
    id: string,
    options: { waitMs?: number; afterVersion?: number; signal?: AbortSignal } = {},
  ): Promise<JobView | undefined> {
    const query = new URLSearchParams();
    if (options.waitMs !== undefined && options.afterVersion !== undefined) {
      query.set("wait_ms", String(options.waitMs));
      query.set("after_version", String(options.afterVersion));
    }
    const qs = query.size > 0 ? `?${query}` : "";
    const answer = await this.answer("GET", `/v1/jobs/${encodeURIComponent(id)}${qs}`, {
      signal: options.signal,
      allow404: true,
      extraTimeoutMs: options.waitMs ?? 0,
    });
    return answer.status === 404 ? undefined : jobView(id, answer);
  }

  async result(id: string, signal?: AbortSignal): Promise<Readable> {
    const res = await this.call("GET", `/v1/jobs/${encodeURIComponent(id)}/result`, {
      signal,
      noTimeout: true,
    });
    return res.body;
  }

  /** A text job's spoken audio (audio/wav), once `speech_audio` is in its view. */
  async speechAudio(id: string, signal?: AbortSignal): Promise<Readable> {
    const res = await this.call("GET", `/v1/jobs/${encodeURIComponent(id)}/audio`, {
      signal,
      noTimeout: true,
    });
    return res.body;
  }

  async cancelJob(id: string, signal?: AbortSignal): Promise<void> {
    const answer = await this.answer("DELETE", `/v1/jobs/${encodeURIComponent(id)}`, {
      signal,
      allow404: true,
    });
    if (answer.status !== 404) jobView(id, answer);
  }

  /** `call`, with the body read to its end; a connection lost meanwhile is the worker unreachable. */
  private async answer(method: Dispatcher.HttpMethod, path: string, opts: CallOptions): Promise<Answer> {
    const res = await this.call(method, path, opts);
    const endpoint = `${method} ${this.baseUrl}${path}`;
    try {
      return { endpoint, status: res.statusCode, body: await res.body.text() };
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new WorkerUnreachableError(`${endpoint}: ${describeNetworkError(err)}`);
    }
  }

  private async call(
    method: Dispatcher.HttpMethod,
    path: string,
    opts: CallOptions,
  ): Promise<Dispatcher.ResponseData> {
    const timeout = opts.noTimeout ? 0 : this.options.requestTimeoutMs + (opts.extraTimeoutMs ?? 0);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.baseUrl}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: { ...this.headers, ...opts.headers },
        body: opts.body ?? null,
        signal: opts.signal ?? null,
        headersTimeout: timeout,
        bodyTimeout: opts.noTimeout ? 5 * 60_000 : timeout,
        // undici closes the connection after every HEAD, in case a server sends a body with it;
        // the agent never does, and a new connection for each "is this blob there?" costs a
        // handshake and a socket in TIME_WAIT each time.
        ...(method === "HEAD" ? { reset: false } : {}),
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new WorkerUnreachableError(
        `${method} ${this.baseUrl}${path}: ${describeNetworkError(err)}`,
        networkErrorCode(err) === "ECONNREFUSED",
      );
    }
    if (res.statusCode >= 400 && !(opts.allow404 && res.statusCode === 404)) {
      throw refusal(res.statusCode, await res.body.text().catch(() => ""));
    }
    return res;
  }
}

interface CallOptions {
  signal?: AbortSignal | undefined;
  body?: string | Readable;
  headers?: Record<string, string>;
  allow404?: boolean;
  noTimeout?: boolean;
  extraTimeoutMs?: number;
}

/** A job view, and the one asked about: a view of another job would be followed as this one. */
function jobView(id: string, answer: Answer): JobView {
  return askedAbout(JobReply, id, answer, "the job asked about");
}

/** The reply decoded, and about the id asked for: an answer about another one is a protocol error. */
function askedAbout<T extends { id: string }>(
  reply: { parse(endpoint: string, status: number, body: unknown): T },
  id: string,
  answer: Answer,
  what: string,
): T {
  const view = reply.parse(answer.endpoint, answer.status, answer.body);
  if (view.id !== id)
    throw new ProtocolError(answer.endpoint, answer.status, `/id: ${view.id}`, answer.body, what);
  return view;
}

/**
 * An error status, with the worker's error body when it sent one. Anything else (a proxy's HTML
 * page, an empty body) is still an answer with that status, kept as it came: the status says enough.
 */
function refusal(status: number, text: string): WorkerHttpError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (ErrorReply.matches(parsed))
    return new WorkerHttpError(status, parsed.error, parsed.message, parsed.field);
  return new WorkerHttpError(
    status,
    `HTTP_${status}`,
    `HTTP ${status} with ${excerpt(text)}: not a worker agent's answer; machines.json must name the ` +
      "agent (multi-heygem worker, port 8000 by default), not a HeyGem container or a web server",
  );
}
