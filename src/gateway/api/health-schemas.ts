/** The shapes of the operations routes (`/healthz`, `/readyz`), for their replies and the OpenAPI document. */
import { type Static, Type } from "@sinclair/typebox";

export const Liveness = Type.Object(
  { status: Type.Literal("ok") },
  {
    description: "The process answers; says nothing about the store, the disk or the machines",
    example: { status: "ok" },
  },
);

const Check = (properties: Parameters<typeof Type.Object>[0], description: string) =>
  Type.Object({ ok: Type.Boolean(), ...properties, error: Type.Optional(Type.String()) }, { description });

export const ReadinessView = Type.Object(
  {
    status: Type.Union([Type.Literal("ready"), Type.Literal("not_ready")]),
    failing: Type.Array(Type.String(), {
      description: "Names of the checks that failed (store, disk, machines, accepting)",
    }),
    checks: Type.Object({
      store: Check({}, "The store takes a write (one rolled back at once)"),
      disk: Check(
        { free_bytes: Type.Integer({ minimum: 0 }), floor_bytes: Type.Integer({ minimum: 0 }) },
        "Free space under the data dir is at least the floor",
      ),
      machines: Check(
        {
          up: Type.Integer({ minimum: 0 }),
          total: Type.Integer({ minimum: 0 }),
          embedded: Type.Boolean({ description: "An embedded worker runs in the gateway" }),
        },
        "At least one machine is up and takes work, or the embedded worker runs",
      ),
      accepting: Check({}, "The gateway takes new tasks: false once it is stopping (SIGTERM)"),
    }),
  },
  {
    description: "Each check with its figures; `failing` names those that failed",
    example: {
      status: "not_ready",
      failing: ["machines"],
      checks: {
        store: { ok: true },
        disk: { ok: true, free_bytes: 412_000_000_000, floor_bytes: 1_073_741_824 },
        machines: { ok: false, up: 0, total: 3, embedded: false, error: "0 of 3 machines up" },
        accepting: { ok: true },
      },
    },
  },
);
export type ReadinessView = Static<typeof ReadinessView>;
