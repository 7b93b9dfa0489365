import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError, QueueFullError, TooLargeError, UploadTimeoutError } from "../errors.js";
import type { ErrorBody } from "../protocol/schemas.js";
import { storageFault } from "../store/storage-faults.js";

/**
 * The one place errors become HTTP answers: `{ error, message, field? }` with the error's own
 * status. Used by both the gateway and the worker agent.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((thrown: FastifyError | AppError | Error, request, reply) => {
    // A disk that is full or gone is no bug of ours: 507/503 with a message, the details in the log.
    const fault = thrown instanceof AppError ? undefined : storageFault(thrown);
    if (fault) request.log.warn({ err: thrown }, fault.message);
    const err = fault ?? thrown;
    const body = toErrorBody(err);
    const status = statusOf(err);
    if (status >= 500 && !(err instanceof AppError)) request.log.error({ err }, "request failed");
    else if (status >= 500) request.log.warn({ code: body.error }, body.message);
    else request.log.info({ code: body.error, field: body.field }, body.message);
    if (err instanceof QueueFullError) void reply.header("retry-after", String(err.retryAfterSeconds));
    // The rest of a body too big or too slow to be worth reading is not waited for. (A body refused
    // before it was read, 429/503/507, is drained first by the gateway, so the client still
    // sending gets to read the answer instead of a broken pipe: upload-deadline.ts, discardBody.)
    if (!request.raw.complete && (err instanceof TooLargeError || err instanceof UploadTimeoutError))
      void reply.header("connection", "close");
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ error: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } satisfies ErrorBody);
  });
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route runs (a URL that does not
 * decode, a path parameter over its length) answers in the same JSON as every other error.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof err.statusCode === "number" && err.statusCode < 500 ? err.statusCode : 400;
  void reply
    .status(status)
    .send({ error: err.code ?? "BAD_REQUEST", message: err.message } satisfies ErrorBody);
}

function statusOf(err: unknown): number {
  if (err instanceof AppError) return err.statusCode;
  const code = (err as { statusCode?: unknown }).statusCode;
  return typeof code === "number" && code >= 400 && code < 600 ? code : 500;
}

function toErrorBody(err: unknown): ErrorBody {
  if (err instanceof AppError) {
    return err.field === undefined
      ? { error: err.code, message: err.message }
      : { error: err.code, message: err.message, field: err.field };
  }
  const fe = err as Partial<FastifyError> & { validation?: { instancePath?: string; params?: unknown }[] };
  if (fe.validation) {
    const first = fe.validation[0];
    const params = (first?.params ?? {}) as { missingProperty?: string };
    const field = params.missingProperty ?? first?.instancePath?.replace(/^\//, "").replace(/\//g, ".");
    const body: ErrorBody = { error: "INVALID_REQUEST", message: fe.message ?? "invalid request" };
    if (field) body.field = field;
    return body;
  }
  const status = statusOf(err);
  if (status < 500) {
    return { error: fe.code ?? "BAD_REQUEST", message: fe.message ?? "bad request" };
  }
  return { error: "INTERNAL", message: "internal error; see the server log" };
}
