import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { NotFoundError } from "../../errors.js";

/**
 * The web dashboard (issue 11), built by `npm run build` (and so by `prepare` at install) into
 * dist/ui. This file sits three folders below the package root both as source (src/gateway/api)
 * and built (dist/gateway/api), so one relative path finds the build from either.
 */
export const DASHBOARD_DIR = fileURLToPath(new URL("../../../dist/ui/", import.meta.url));

/**
 * The page may run its own scripts and styles and talk to this gateway, nothing else: no inline
 * script, no CDN. `blob:` media is the result video fetched with the API key (a `<video>` cannot
 * send an Authorization header).
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

export interface DashboardRoutesOptions {
  version: string;
  /** Where the built dashboard is; DASHBOARD_DIR unless a test says otherwise. */
  dir?: string;
}

/**
 * `/ui/…`: the dashboard's static files, open to anyone like `/docs` (the data comes through the
 * API, with the key the page asks for). `/`: a browser is sent to the dashboard; API clients keep
 * the JSON they always got.
 */
export async function dashboardRoutes(app: FastifyInstance, options: DashboardRoutesOptions): Promise<void> {
  const dir = options.dir ?? DASHBOARD_DIR;

  app.get("/", { schema: { hide: true }, config: { access: "public" } }, async (request, reply) => {
    if (wantsHtml(request)) return reply.redirect("/ui/", 302);
    return { name: "multi-heygem", version: options.version, docs: "/docs", dashboard: "/ui/" };
  });

  if (!existsSync(`${dir}/index.html`)) {
    // A checkout that ran tsc alone: say what is missing rather than a bare 404.
    app.get("/ui/*", { schema: { hide: true }, config: { access: "public" } }, async () => {
      throw new NotFoundError("the dashboard is not built: run npm run build");
    });
    return;
  }

  // Relative asset URLs need the trailing slash.
  app.get("/ui", { schema: { hide: true }, config: { access: "public" } }, async (_request, reply) =>
    reply.redirect("/ui/", 301),
  );
  await app.register(async (scope) => {
    scope.addHook("onRoute", (route) => {
      route.config = { ...route.config, access: "public" };
      route.schema = { ...route.schema, hide: true };
    });
    await scope.register(fastifyStatic, {
      root: dir,
      prefix: "/ui/",
      decorateReply: false,
      cacheControl: false,
      setHeaders: (res, path) => {
        // File names under assets/ carry a hash of their content: a new build has new names.
        if (path.includes("/assets/")) res.setHeader("cache-control", "public, max-age=31536000, immutable");
        else res.setHeader("cache-control", "no-cache");
        if (path.endsWith(".html")) {
          res.setHeader("content-security-policy", DASHBOARD_CSP);
          res.setHeader("x-frame-options", "DENY");
        }
        res.setHeader("x-content-type-options", "nosniff");
        res.setHeader("referrer-policy", "no-referrer");
      },
    });
  });
}

/** A browser navigating, as opposed to curl or a client asking for JSON. */
function wantsHtml(request: FastifyRequest): boolean {
  return (request.headers.accept ?? "").includes("text/html");
}
