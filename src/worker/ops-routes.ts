import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import { registerMetricsRoute } from "../http/metrics-route.js";

/** Paths a liveness probe calls without the worker token: it has none, and learns nothing private. */
export const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/healthz"]);

/**
 * `GET /healthz` (the agent answers) and `GET /metrics` (Prometheus) beside the /v1 protocol,
 * whose `/v1/health` stays what the gateway probes.
 */
export function registerOpsRoutes(app: FastifyInstance, registry: Registry): void {
  app.get(
    "/healthz",
    { schema: { response: { 200: Type.Object({ status: Type.Literal("ok") }) } } },
    async () => ({ status: "ok" as const }),
  );
  registerMetricsRoute(app, registry);
}
