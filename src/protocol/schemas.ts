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

/**
 * Bounds of a text job's speech (heygem-tts-contract.md, "Speaking": the fish-speech server's own
 * names and ranges), shared with the gateway, which checks a task's settings against the same ones.
 */
export const SPEECH_BOUNDS = Object.freeze({
  text: Object.freeze({ minLength: 1, maxLength: 20_000 }),
  temperature: Object.freeze({ minimum: 0.1, maximum: 1 }),
  top_p: Object.freeze({ minimum: 0.1, maximum: 1 }),
  chunk_length: Object.freeze({ minimum: 100, maximum: 300 }),
  repetition_penalty: Object.freeze({ minimum: 0.9, maximum: 2 }),
});
export const DEFAULT_SPEECH_LANG = "zh";
/** A language as fish-speech's `lang` takes it (`zh`, `en`, `ja`…), checked alike on both sides. */
export const SPEECH_LANG_PATTERN = "^[A-Za-z-]{2,16}$";

export const SpeechSettings = Type.Object(
  {
    temperature: Type.Optional(Type.Number({ ...SPEECH_BOUNDS.temperature, description: "default 0.7" })),
    top_p: Type.Optional(Type.Number({ ...SPEECH_BOUNDS.top_p, description: "default 0.7" })),
    chunk_length: Type.Optional(Type.Integer({ ...SPEECH_BOUNDS.chunk_length, description: "default 200" })),
    repetition_penalty: Type.Optional(
      Type.Number({ ...SPEECH_BOUNDS.repetition_penalty, description: "default 1.2" }),
    ),
  },
  {
    additionalProperties: false,
    description: "fish-speech's settings; engines that cannot use one ignore it",
  },
);
export type SpeechSettings = Static<typeof SpeechSettings>;

export const SpeechVoice = Type.Object(
  {
    id: Type.String({ pattern: "^[A-Za-z0-9_-]{1,80}$", description: "The gateway's voice id" }),
    /** The reference recording, a blob uploaded like any input (wav, mp3 or flac). */
    reference: BlobRef,
    reference_text: Type.Optional(
      Type.String({
        maxLength: 20_000,
        description: "Its transcript, when known; else the machine's ASR makes it",
      }),
    ),
  },
  {
    additionalProperties: false,
    description: "A voice to clone: its reference recording is a blob the gateway uploads like any input",
  },
);
export type SpeechVoice = Static<typeof SpeechVoice>;

export const SpeechRequest = Type.Object(
  {
    text: Type.String({ ...SPEECH_BOUNDS.text, description: "What to say" }),
    lang: Type.String({ default: DEFAULT_SPEECH_LANG, pattern: SPEECH_LANG_PATTERN }),
    voice: Type.Optional(SpeechVoice),
    settings: Type.Optional(SpeechSettings),
  },
  {
    additionalProperties: false,
    description:
      "A text job: the worker speaks the text (step speech), then lip-syncs what it spoke (step lipsync). " +
      "Without a voice, the machine's own voice speaks (capabilities.tts); a voice needs capabilities.voice_clone",
  },
);
export type SpeechRequest = Static<typeof SpeechRequest>;

export const VoiceId = Type.String({
  pattern: "^[A-Za-z0-9_-]{1,80}$",
  description: "The gateway's voice id",
});

/**
 * How long a worker may take to answer `PUT /v1/voices/{id}`: the voice service's speech
 * recognition of the reference (fish-speech's own deadline is 180 s) after waiting for its
 * container, which serves one request at a time. Past it the worker answers 503
 * VOICE_SERVICE_UNAVAILABLE; the gateway waits this long plus its request timeout.
 */
export const VOICE_PREPARE_TIMEOUT_MS = 300_000;

/** `PUT /v1/voices/{id}`: make the voice usable on this machine (issue 12, "Voices"). */
export const PutVoiceBody = Type.Object(
  {
    reference: BlobRef,
    lang: Type.String({
      default: DEFAULT_SPEECH_LANG,
      pattern: SPEECH_LANG_PATTERN,
      description: "The language spoken in the recording",
    }),
    reference_text: Type.Optional(
      Type.String({
        maxLength: 20_000,
        description: "Its transcript, when known: used where the machine's speech recognition hears nothing",
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      "The voice's reference recording, a blob uploaded like any input (409 BLOB_MISSING until it is held)",
  },
);
export type PutVoiceBody = Static<typeof PutVoiceBody>;

export const PreparedVoiceView = Type.Object({
  id: VoiceId,
  reference_text: Type.String({
    description: "What the voice service heard in the recording (its segments joined by a space)",
  }),
  prepared: Type.Boolean({
    description: "true: this call prepared the voice; false: the machine had it prepared already",
  }),
});
export type PreparedVoiceView = Static<typeof PreparedVoiceView>;

/** Exactly one of `audio` and `speech` (checked by the worker, which names the field). */
export const PutJobBody = Type.Object({
  audio: Type.Optional(BlobRef),
  speech: Type.Optional(SpeechRequest),
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
  speech_audio: Type.Optional(
    Type.Union([Type.Object({ sha256: Sha256, bytes: Type.Integer({ minimum: 0 }) }), Type.Null()], {
      description:
        "Text jobs only: null until the text is spoken, then the spoken audio, kept as an artifact " +
        "(GET /v1/jobs/{id}/audio, audio/wav). Absent for jobs given an audio file",
    }),
  ),
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
  capabilities: Type.Optional(
    Type.Object(
      {
        lipsync: Type.String({ description: "The lip-sync engine's name" }),
        tts: Type.Boolean({ description: "The agent takes text jobs (speech)" }),
        voice_clone: Type.Boolean({ description: "…with a voice (speech.voice) cloned from a reference" }),
      },
      { description: "What the machine can do. Absent from agents older than this field: lip-sync only" },
    ),
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
