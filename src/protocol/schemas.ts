/**
 * The gateway ↔ worker agent protocol, version 1 (design.md, "Worker protocol").
 * These TypeBox schemas are the single source of the wire types: the worker validates with them,
 * the gateway's client decodes with them, and both OpenAPI documents show them.
 */
import { FormatRegistry, type Static, Type } from "@sinclair/typebox";

export const PROTOCOL_VERSION = 1;

export const Sha256 = Type.String({ pattern: "^[0-9a-f]{64}$", description: "Lower-case hex SHA-256" });

export const JobId = Type.String({
  pattern: "^[A-Za-z0-9_-]{1,80}$",
  description: "Chosen by the gateway: the attempt id. Re-using it re-attaches to the same job.",
});

/** Every error answer of the protocol; its codes are the shared catalogue's. */
export { ErrorBody } from "../error-codes.js";

/** HeyGem's own submit options (heygem-contract.md, "POST /easy/submit"); other engines may ignore them. */
export const JobOptions = Type.Object({
  chaofen: Type.Union([Type.Literal(0), Type.Literal(1)], {
    default: 0,
    description: "1 = super-resolution",
  }),
  watermark_switch: Type.Union([Type.Literal(0), Type.Literal(1)], {
    default: 0,
    description: "1 = watermark",
  }),
  pn: Type.Union([Type.Literal(0), Type.Literal(1)], {
    default: 1,
    description: "1 = loop the video forward then backward when the audio is longer; 0 = restart it",
  }),
});
export type JobOptions = Static<typeof JobOptions>;
export const DEFAULT_JOB_OPTIONS: JobOptions = Object.freeze({ chaofen: 0, watermark_switch: 0, pn: 1 });

export const BlobRef = Type.Object({
  sha256: Sha256,
  bytes: Type.Integer({ minimum: 0 }),
  name: Type.Optional(
    Type.String({ maxLength: 255, description: "Original file name, for extensions and logs" }),
  ),
});
export type BlobRef = Static<typeof BlobRef>;

export const PutJobBody = Type.Object({
  audio: BlobRef,
  video: BlobRef,
  options: Type.Optional(JobOptions),
  audio_duration: Type.Optional(
    Type.Number({ minimum: 0, description: "Seconds, as probed by the gateway" }),
  ),
  max_audio_seconds: Type.Optional(
    Type.Number({
      minimum: 1,
      description: "The worker measures the audio itself and fails the job (input) when it is longer",
    }),
  ),
});
export type PutJobBody = Static<typeof PutJobBody>;

export const JobStatus = Type.Union([
  Type.Literal("queued"),
  Type.Literal("running"),
  Type.Literal("succeeded"),
  Type.Literal("failed"),
  Type.Literal("cancelled"),
]);
export type JobStatus = Static<typeof JobStatus>;
export const FINAL_JOB_STATUSES: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "cancelled"]);

export const FailureKindSchema = Type.Union([Type.Literal("input"), Type.Literal("machine")]);

export const JobView = Type.Object({
  id: JobId,
  status: JobStatus,
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  message: Type.Optional(Type.String({ description: "The engine's latest step, in its own words" })),
  error: Type.Optional(Type.Object({ kind: FailureKindSchema, message: Type.String() })),
  result: Type.Optional(Type.Object({ sha256: Sha256, bytes: Type.Integer({ minimum: 0 }) })),
  created_at: Type.String({ format: "date-time" }),
  started_at: Type.Optional(Type.String({ format: "date-time" })),
  finished_at: Type.Optional(Type.String({ format: "date-time" })),
  version: Type.Integer({
    minimum: 0,
    description: "Grows on every change; pass it back as after_version to long-poll for the next one",
  }),
});
export type JobView = Static<typeof JobView>;

export const GetJobQuery = Type.Object({
  wait_ms: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 60_000, description: "Long-poll up to this long" }),
  ),
  after_version: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type GetJobQuery = Static<typeof GetJobQuery>;

export const Health = Type.Object({
  protocol: Type.Literal(PROTOCOL_VERSION),
  engine: Type.String(),
  version: Type.String({ description: "multi-heygem version of the agent" }),
  max_concurrent: Type.Integer({ minimum: 1 }),
  state: Type.Optional(
    Type.Union([Type.Literal("ready"), Type.Literal("draining")], {
      description:
        "draining: the agent is stopping (SIGTERM); it finishes its jobs, answers polls and results, and " +
        "refuses new jobs (503 WORKER_DRAINING). Absent from agents older than this field: ready",
    }),
  ),
  running: Type.Array(JobId, { description: "Jobs the engine is working on now" }),
  queued: Type.Array(JobId, { description: "Jobs accepted and waiting for a free engine slot" }),
  free_disk_bytes: Type.Integer({ minimum: 0 }),
  held: Type.Optional(
    Type.Array(JobId, {
      description:
        "Jobs that are over for the agent (cancelled, or failed for hanging) whose backend still works on " +
        "them: a HeyGem container cannot stop a task, so each keeps an engine slot until its render ends. " +
        "The gateway counts them as busy slots",
    }),
  ),
  instances: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String(),
        reachable: Type.Boolean(),
        healthy: Type.Optional(
          Type.Boolean({
            description:
              "false after a machine-class failure until the instance answers again (or its hung task ends): it gets no new jobs",
          }),
        ),
        busy: Type.Boolean(),
        job: Type.Optional(JobId),
        last_error: Type.Optional(Type.String()),
      }),
      { description: "The engine's backends one by one, for engines that drive several (heygem)" },
    ),
  ),
});
export type Health = Static<typeof Health>;

export const TOKEN_HEADER = "authorization";
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** The answer to `PUT /v1/blobs/{sha256}` (201 stored, 200 already held). */
export const StoredBlob = Type.Object({ sha256: Sha256, bytes: Type.Integer({ minimum: 0 }) });
export type StoredBlob = Static<typeof StoredBlob>;

/**
 * TypeBox's own checker (`Value.Check`, for decoding outside Fastify: stored job records, replies
 * read by the gateway's client) fails every string whose format it does not know. Fastify's Ajv
 * knows date-time already; this teaches TypeBox the same RFC 3339 form.
 */
const RFC3339_DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set(
    "date-time",
    (value) => RFC3339_DATE_TIME.test(value) && !Number.isNaN(Date.parse(value)),
  );
}
