import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type ErrorBody, type ErrorCode, errorBody, httpStatus } from "../error-codes.js";
import { AppError, RetryLaterError, TooLargeError, UploadTimeoutError } from "../errors.js";
import { storageFault } from "./storage-faults.js";

/**
 * The one place errors become HTTP answers: `{ error, message, field? }`, with the code and status
 * from the catalogue (error-codes.ts). Used by both the gateway and the worker agent.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((thrown: FastifyError | AppError | Error, request, reply) => {
    // A disk that is full or gone is no bug of ours: 507/503 with a message, the details in the log.
    const fault = thrown instanceof AppError ? undefined : storageFault(thrown);
    if (fault) request.log.warn({ err: thrown }, fault.message);
    const err = fault ?? thrown;
    const { status, body } = toAnswer(err);
    if (status >= 500 && !(err instanceof AppError)) request.log.error({ err }, "request failed");
    else if (status >= 500) request.log.warn({ code: body.error }, body.message);
    else request.log.info({ code: body.error, field: body.field }, body.message);
    if (err instanceof RetryLaterError) void reply.header("retry-after", String(err.retryAfterSeconds));
    // The rest of a body too big or too slow to be worth reading is not waited for. (A body refused
    // before it was read, 429/503/507, is drained first by the gateway, so the client still
    // sending gets to read the answer instead of a broken pipe: upload-deadline.ts, discardBody.)
    if (
      !request.raw.complete &&
      (err instanceof TooLargeError || err instanceof UploadTimeoutError || isMalformedForm(err))
    )
      void reply.header("connection", "close");
    // An error is JSON, whatever the route meant to send: a stream that failed before its first
    // byte leaves its file's type and name on the reply, and Fastify would refuse to send an
    // object under them (a 500 of its own instead of ours).
    reply.removeHeader("content-type").removeHeader("content-disposition");
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(httpStatus("NOT_FOUND"))
      .send(errorBody("NOT_FOUND", `no route ${request.method} ${request.url}`));
  });
}

/** A form the parser gave up on: what is left of its body would read as the next request. */
function isMalformedForm(err: unknown): boolean {
  return err instanceof AppError && err.code === "MALFORMED_MULTIPART";
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route runs (a URL that does not
 * decode, a path parameter over its length) answers in the same JSON, and the same codes, as every
 * other error.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toAnswer(err);
  void reply
    .status(status < 500 ? status : httpStatus("BAD_REQUEST"))
    .send(status < 500 ? body : errorBody("BAD_REQUEST", err.message));
}

/**
 * Fastify's own 4xx errors (an unreadable body, a content type no route takes) under the
 * catalogue's codes, so clients see one vocabulary; any other is a BAD_REQUEST.
 */
const FASTIFY_CLIENT_ERRORS: ReadonlyMap<number, ErrorCode> = new Map([
  [404, "NOT_FOUND"],
  [413, "BODY_TOO_LARGE"],
  [415, "UNSUPPORTED_MEDIA_TYPE"],
]);

function toAnswer(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof AppError)
    return { status: err.statusCode, body: errorBody(err.code, err.message, err.field) };
  const fe = err as Partial<FastifyError> & { validation?: { instancePath?: string; params?: unknown }[] };
  if (fe.validation) {
    const first = fe.validation[0];
    const params = (first?.params ?? {}) as { missingProperty?: string };
    const field = params.missingProperty ?? first?.instancePath?.replace(/^\//, "").replace(/\//g, ".");
    const message = fe.message ?? "invalid request";
    return {
      status: httpStatus("INVALID_REQUEST"),
      body: errorBody("INVALID_REQUEST", message, field || undefined),
    };
  }
  const status = fe.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const code = FASTIFY_CLIENT_ERRORS.get(status) ?? "BAD_REQUEST";
    return { status: httpStatus(code), body: errorBody(code, fe.message ?? "bad request") };
  }
  return {
    status: httpStatus("INTERNAL"),
    body: errorBody("INTERNAL", "internal error; see the server log"),
  };
}
