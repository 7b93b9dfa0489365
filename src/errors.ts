/**
 * Typed errors with a stable `code`. One place (http/error-handler.ts) maps them to an HTTP status
 * and the JSON body `{ error, message, field? }`, so routes only throw.
 */
export class AppError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly field: string | undefined;

  constructor(code: string, statusCode: number, message: string, field?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.statusCode = statusCode;
    this.field = field;
  }
}

/** The client sent something we cannot use (missing field, not a media file, bad option). */
export class InputError extends AppError {
  constructor(code: string, message: string, field?: string, statusCode = 400) {
    super(code, statusCode, message, field);
  }
}

export class TooLargeError extends AppError {
  constructor(message: string, field?: string) {
    super("FILE_TOO_LARGE", 413, message, field);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super("NOT_FOUND", 404, message);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string) {
    super(code, 409, message);
  }
}

/** The queue holds `--max-pending` tasks: the client should come back after `retryAfterSeconds`. */
export class QueueFullError extends AppError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super("QUEUE_FULL", 429, message);
  }
}

/** Free disk under the data dir is below `--min-free-disk` (or the disk is full): nothing was stored. */
export class InsufficientStorageError extends AppError {
  constructor(message: string) {
    super("INSUFFICIENT_STORAGE", 507, message);
  }
}

/**
 * The data dir vanished, turned read-only or fails to write: the gateway cannot keep a change, so
 * it refuses it rather than pretend (issue 9). Says what is wrong, never where on disk.
 */
export class StoreUnavailableError extends AppError {
  constructor(message: string) {
    super("STORE_UNAVAILABLE", 503, message);
  }
}

/** An upload stalled or took longer than its limit: what arrived is discarded. */
export class UploadTimeoutError extends AppError {
  constructor(message: string) {
    super("UPLOAD_TIMEOUT", 408, message);
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
