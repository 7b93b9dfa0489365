import type { FastifyInstance } from "fastify";
import { collectDefaultMetrics, Registry } from "prom-client";

/**
 * A registry of its own for one server, with Node's process metrics on it: tests run several
 * gateways and workers in one process, and prom-client's global registry would mix their figures
 * (and refuse the second registration of a name).
 */
export function serverRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}

/** `GET /metrics` in Prometheus' text format, computed at scrape time. */
export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get(
    "/metrics",
    {
      schema: {
        summary: "Prometheus metrics",
        description:
          "Every metric of this server in Prometheus' text exposition format (README, Health and metrics).",
        tags: ["operations"],
        produces: ["text/plain"],
        response: { 200: { type: "string", description: "Prometheus text format 0.0.4" } },
      },
    },
    async (_request, reply) => {
      const text = await registry.metrics();
      return reply.header("content-type", registry.contentType).send(text);
    },
  );
}
