import { ERROR_CODES, type ErrorCode, type ErrorCodeWithStatus, httpStatus } from "./error-codes.js";

/**
 * Typed errors with a stable `code` from the catalogue (error-codes.ts), which also gives their
 * HTTP status. One place (http/error-handler.ts) turns them into the JSON body
 * `{ error, message, field? }`, so routes only throw.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, field?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.statusCode = httpStatus(code);
    this.field = field;
  }
}

/** The client sent something we cannot use (missing field, not a media file, bad option). */
export class InputError extends AppError {
  /**
   * @param statusCode Not needed: the catalogue has it. Callers written before the catalogue still
   * pass it; it must agree, and a disagreement is a bug that fails loudly rather than answer wrong.
   */
  constructor(code: ErrorCode, message: string, field?: string, statusCode?: number) {
    super(code, message, field);
    if (statusCode !== undefined && statusCode !== this.statusCode) {
      throw new TypeError(`${code} has status ${this.statusCode} in the catalogue, not ${statusCode}`);
    }
  }
}

export class TooLargeError extends AppError {
  constructor(message: string, field?: string) {
    super("FILE_TOO_LARGE", message, field);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super("NOT_FOUND", message);
  }
}

/** No credentials, or credentials nobody issued; the answer carries `WWW-Authenticate`. */
export class UnauthorizedError extends AppError {
  constructor(code: ErrorCodeWithStatus<401>, message: string) {
    super(code, message);
  }
}

/** Known credentials that do not allow this request. */
export class ForbiddenError extends AppError {
  constructor(code: ErrorCodeWithStatus<403>, message: string, field?: string) {
    super(code, message, field);
  }
}

export class ConflictError extends AppError {
  constructor(code: ErrorCodeWithStatus<409>, message: string) {
    super(code, message);
  }
}

/**
 * A peer (a worker agent, a HeyGem container) answered, but not with what its protocol promises:
 * the wrong shape, or not JSON at all. The peer's fault, so a `machine` failure wherever it ends
 * an attempt. Names the endpoint, the first mismatch, and the start of the body. Not an AppError:
 * it is met by a client, and should one reach a route it is a bug (500), not the peer's words.
 */
export class ProtocolError extends Error {
  readonly code = "PROTOCOL_ERROR" satisfies ErrorCode;
  readonly kind = ERROR_CODES.PROTOCOL_ERROR.kind;

  constructor(
    /** e.g. `GET http://10.0.0.5:8000/v1/health` */
    readonly endpoint: string,
    /** The peer's HTTP status. */
    readonly status: number,
    /** The first mismatch (`/progress: Expected integer`), or `not JSON`. */
    readonly problem: string,
    body: string,
    /** What the answer should have been, e.g. "a HeyGem reply". */
    expected: string,
  ) {
    super(`${endpoint}: HTTP ${status}, not ${expected}: ${problem}; body: ${excerpt(body)}`);
    this.name = "ProtocolError";
  }
}

const EXCERPT_CHARS = 200;

/**
 * The start of a body for a log line or `last_error`. A web page is named by its title: an
 * operator who pointed machines.json at a web server or a HeyGem container's port should read
 * what answered, not a screenful of markup (issue 10).
 */
export function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, " ").trim();
  if (flat === "") return "(empty)";
  if (/^(<!doctype html|<html|<head|<body)/i.test(flat)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(flat)?.[1]?.trim();
    return title ? `an HTML page titled "${title.slice(0, 80)}"` : "an HTML page";
  }
  return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat;
}

/** Not the client's fault and not for long: the answer says when to come back (`Retry-After`). */
export class RetryLaterError extends AppError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(code, message);
  }
}

/** The queue holds `--max-pending` tasks: the client should come back after `retryAfterSeconds`. */
export class QueueFullError extends RetryLaterError {
  constructor(message: string, retryAfterSeconds: number) {
    super("QUEUE_FULL", message, retryAfterSeconds);
  }
}

/** Free disk under the data dir is below `--min-free-disk` (or the disk is full): nothing was stored. */
export class InsufficientStorageError extends AppError {
  constructor(message: string) {
    super("INSUFFICIENT_STORAGE", message);
  }
}

/**
 * The data dir vanished, turned read-only or fails to write: the gateway cannot keep a change, so
 * it refuses it rather than pretend (issue 9). Says what is wrong, never where on disk.
 */
export class StoreUnavailableError extends AppError {
  constructor(message: string) {
    super("STORE_UNAVAILABLE", message);
  }
}

/** An upload stalled or took longer than its limit: what arrived is discarded. */
export class UploadTimeoutError extends AppError {
  constructor(message: string) {
    super("UPLOAD_TIMEOUT", message);
  }
}

/** A configuration file or flag is wrong: names the file (or flag) and the field. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly fieldPath: string,
    readonly problem: string,
  ) {
    super(`${source}: ${fieldPath ? `${fieldPath}: ` : ""}${problem}`);
    this.name = "ConfigError";
  }
}

/**
 * Who is to blame for a failed job decides what happens next: `input` fails the task at once,
 * `machine` means another machine may well succeed (design.md, "Task model").
 */
export type FailureKind = "input" | "machine";

export class EngineError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The process cannot start as configured and the operator must act (a data dir in use, a store
 * that is corrupt or lost): the CLI prints the message as one line and exits 2, no stack trace.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StartupError";
  }
}
