import type { FastifyError, FastifyInstance } from "fastify";
import { type ErrorBody, type ErrorCode, errorBody, httpStatus } from "../error-codes.js";
import { AppError } from "../errors.js";

/**
 * The one place errors become HTTP answers: `{ error, message, field? }`, with the code and status
 * from the catalogue (error-codes.ts). Used by both the gateway and the worker agent.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    const { status, body } = toAnswer(err);
    if (status >= 500) request.log.error({ err }, "request failed");
    else request.log.info({ code: body.error, field: body.field }, body.message);
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(httpStatus("NOT_FOUND"))
      .send(errorBody("NOT_FOUND", `no route ${request.method} ${request.url}`));
  });
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
