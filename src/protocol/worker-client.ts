import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { Agent, type Dispatcher, request, errors as undiciErrors } from "undici";
import { type ErrorCode, failureKindOf } from "../error-codes.js";
import type { FailureKind } from "../errors.js";
import { bearer, type Health, type JobView, type PutJobBody, TOKEN_HEADER } from "./schemas.js";

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
  constructor(message: string) {
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
    return this.json<Health>("GET", "/v1/health", { signal });
  }

  async hasBlob(sha256: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.call("HEAD", `/v1/blobs/${sha256}`, { signal, allow404: true });
    await res.body.dump();
    return res.statusCode === 200;
  }

  /** Streams a file to the worker's blob cache; the worker checks the hash. */
  async putBlob(sha256: string, path: string, bytes: number, signal?: AbortSignal): Promise<void> {
    const res = await this.call("PUT", `/v1/blobs/${sha256}`, {
      signal,
      body: createReadStream(path),
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes) },
      // A big template over a slow link takes as long as it takes; only a stalled body times out.
      noTimeout: true,
    });
    await res.body.dump();
  }

  /**
   * Streams content whose hash is not known yet; the worker hashes it and answers with it, and
   * with whether it is new there (`created`) or was already held.
   */
  async postBlob(
    body: Readable,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; bytes: number; created: boolean }> {
    const res = await this.call("POST", "/v1/blobs", {
      signal,
      body,
      headers: { "content-type": "application/octet-stream" },
      noTimeout: true,
    });
    const stored = (await res.body.json()) as { sha256: string; bytes: number };
    return { ...stored, created: res.statusCode === 201 };
  }

  async deleteBlob(sha256: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call("DELETE", `/v1/blobs/${sha256}`, { signal, allow404: true });
    await res.body.dump();
  }

  /** Idempotent: the same id answers with the job that already exists. */
  async putJob(id: string, body: PutJobBody, signal?: AbortSignal): Promise<JobView> {
    return this.json<JobView>("PUT", `/v1/jobs/${encodeURIComponent(id)}`, {
      signal,
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
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
    const res = await this.call("GET", `/v1/jobs/${encodeURIComponent(id)}${qs}`, {
      signal: options.signal,
      allow404: true,
      extraTimeoutMs: options.waitMs ?? 0,
    });
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    return (await res.body.json()) as JobView;
  }

  async result(id: string, signal?: AbortSignal): Promise<Readable> {
    const res = await this.call("GET", `/v1/jobs/${encodeURIComponent(id)}/result`, {
      signal,
      noTimeout: true,
    });
    return res.body;
  }

  async cancelJob(id: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call("DELETE", `/v1/jobs/${encodeURIComponent(id)}`, { signal, allow404: true });
    await res.body.dump();
  }

  private async json<T>(method: Dispatcher.HttpMethod, path: string, opts: CallOptions): Promise<T> {
    const res = await this.call(method, path, opts);
    return (await res.body.json()) as T;
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
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new WorkerUnreachableError(`${method} ${this.baseUrl}${path}: ${describeNetworkError(err)}`);
    }
    if (res.statusCode >= 400 && !(opts.allow404 && res.statusCode === 404)) {
      const text = await res.body.text().catch(() => "");
      let parsed: { error?: string; message?: string; field?: string } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        // not JSON: keep the raw text as the message
      }
      throw new WorkerHttpError(
        res.statusCode,
        parsed.error ?? `HTTP_${res.statusCode}`,
        parsed.message ?? (text.slice(0, 300) || `HTTP ${res.statusCode}`),
        parsed.field,
      );
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

function describeNetworkError(err: unknown): string {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return "timed out";
  }
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}
