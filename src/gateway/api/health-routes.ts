import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import { registerMetricsRoute } from "../../http/metrics-route.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import type { Readiness } from "../readiness.js";
import { Liveness, ReadinessView } from "./health-schemas.js";

export interface HealthRoutesOptions {
  readonly readiness: () => Promise<Readiness>;
  readonly registry: Registry;
}

/**
 * `GET /healthz`, `GET /readyz` and `GET /metrics`: what a load balancer, an orchestrator and
 * Prometheus poll. Kept in one plugin of their own so that they can be left open when the API
 * asks for keys: a probe has no key to give.
 */
export async function healthRoutes(app: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    "/healthz",
    {
      config: { access: "public" },
      schema: {
        summary: "Liveness: the process answers",
        tags: ["operations"],
        response: { 200: Liveness },
      },
    },
    async () => ({ status: "ok" as const }),
  );
  api.get(
    "/readyz",
    {
      // A probe polls every few seconds; a 503 each time would bury the log while the fleet is
      // down, which the fleet already logs once when it changes.
      logLevel: "warn",
      config: { access: "public" },
      schema: {
        summary: "Readiness: the gateway can take and run tasks",
        description:
          "200 when the store takes writes, free disk under the data dir is above the floor and at " +
          "least one machine is up (or the embedded worker runs), and the gateway is not stopping; 503 " +
          "naming the failing checks otherwise.",
        tags: ["operations"],
        response: { 200: ReadinessView, 503: ReadinessView },
      },
    },
    async (_request, reply) => {
      const r = await options.readiness();
      return reply.code(r.ready ? 200 : 503).send({
        status: r.ready ? "ready" : "not_ready",
        failing: r.failing,
        checks: r.checks,
      });
    },
  );
  registerMetricsRoute(app, options.registry);
}
