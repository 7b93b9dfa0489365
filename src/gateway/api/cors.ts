import type { FastifyInstance } from "fastify";

/**
 * CORS for exactly the origins of `--cors-origin`, and none at all without it (issue 9): a web
 * app served from one of those origins may call the API with its key; every other page gets no
 * `Access-Control-*` header, so its browser keeps the answers from it.
 */
const ALLOW_METHODS = "GET, HEAD, POST, PUT, DELETE";
const ALLOW_HEADERS = "Authorization, Content-Type, Range, Last-Event-ID";
const EXPOSE_HEADERS =
  "X-Task-Id, Content-Disposition, Content-Range, Accept-Ranges, Retry-After, WWW-Authenticate";

export function allowCorsOrigins(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return;
  // Before access control, so that a browser app is also shown why it was refused (401, 403).
  app.addHook("onRequest", async (request, reply) => {
    void reply.header("vary", "Origin");
    const origin = request.headers.origin;
    if (origin === undefined || !origins.includes(origin)) return;
    void reply
      .header("access-control-allow-origin", origin)
      .header("access-control-expose-headers", EXPOSE_HEADERS);
  });
  // Preflights carry no credentials, so they are public; the request that follows is checked.
  app.options("*", { schema: { hide: true }, config: { access: "public" } }, async (request, reply) => {
    const origin = request.headers.origin;
    if (origin !== undefined && origins.includes(origin)) {
      void reply
        .header("access-control-allow-methods", ALLOW_METHODS)
        .header("access-control-allow-headers", ALLOW_HEADERS)
        .header("access-control-max-age", "600");
    }
    return reply.code(204).send();
  });
}
