import type { FastifyInstance } from "fastify";
import { ForbiddenError, InputError } from "../../errors.js";

/**
 * No cross-site writes (issue 9). A web page may make a browser send a "simple" request — a
 * POST with a text/plain, form-encoded or multipart body — to any address without asking the
 * server first, so a page opened by anyone on the LAN could drain the fleet. Routes that change
 * state therefore refuse those bodies (415) and requests that a browser marks as coming from
 * another site (an `Origin` that is neither this server nor a `--cors-origin`), before anything
 * is read or changed. Task uploads are the exception: their multipart form is the seed's API.
 * Bodiless POSTs without a content type, as curl and the seed's clients send them, pass.
 */
const SIMPLE_TYPES = new Set(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]);
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function refuseCrossSiteWrites(
  app: FastifyInstance,
  options: { readonly allowedOrigins: readonly string[] },
): void {
  app.addHook("onRequest", async (request) => {
    if (SAFE_METHODS.has(request.method) || request.is404) return;
    if (request.routeOptions.config.multipartForm !== undefined) return;
    const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
    if (type !== undefined && SIMPLE_TYPES.has(type)) {
      throw new InputError(
        "UNSUPPORTED_CONTENT_TYPE",
        `${request.method} ${request.routeOptions.url} does not take a ${type} body; send it without a body`,
        undefined,
        415,
      );
    }
    const origin = request.headers.origin;
    if (
      origin !== undefined &&
      !isSameOrigin(origin, request.headers.host) &&
      !options.allowedOrigins.includes(origin)
    ) {
      throw new ForbiddenError(
        "CROSS_SITE_REQUEST",
        `a request from the web page at ${origin} may not change anything here; allow the page with --cors-origin`,
      );
    }
  });
}

/** Swagger UI at /docs posts with an `Origin` naming this very server; that is not cross-site. */
function isSameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
