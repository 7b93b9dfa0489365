import type { FastifyError, FastifyInstance } from "fastify";
import { AppError } from "../errors.js";
import type { ErrorBody } from "../protocol/schemas.js";

/**
 * The one place errors become HTTP answers: `{ error, message, field? }` with the error's own
 * status. Used by both the gateway and the worker agent.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    const body = toErrorBody(err);
    const status = statusOf(err);
    if (status >= 500) request.log.error({ err }, "request failed");
    else request.log.info({ code: body.error, field: body.field }, body.message);
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ error: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } satisfies ErrorBody);
  });
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
