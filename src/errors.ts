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

/** No credentials, or credentials nobody issued; the answer carries `WWW-Authenticate`. */
export class UnauthorizedError extends AppError {
  constructor(code: string, message: string) {
    super(code, 401, message);
  }
}

/** Known credentials that do not allow this request. */
export class ForbiddenError extends AppError {
  constructor(code: string, message: string, field?: string) {
    super(code, 403, message, field);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string) {
    super(code, 409, message);
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
