import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { extname, join } from "node:path";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Speaker, VoiceReady } from "../engines/speech/speaker.js";
import { AppError, EngineError, errorMessage, InputError } from "../errors.js";
import type { TypeBoxTypeProvider } from "../http/typebox-provider.js";
import { makeDir } from "../make-dir.js";
import {
  DEFAULT_SPEECH_LANG,
  ErrorBody,
  PreparedVoiceView,
  PutVoiceBody,
  VOICE_PREPARE_TIMEOUT_MS,
  VoiceId,
} from "../protocol/schemas.js";
import type { BlobCache } from "./blob-cache.js";
import type { WorkerLayout } from "./layout.js";

export interface VoiceRouteDeps {
  readonly speaker?: Speaker | undefined;
  readonly blobs: BlobCache;
  readonly layout: WorkerLayout;
  /** The agent is stopping: it takes no new work, voices included. */
  readonly draining: () => boolean;
  /** Bound on one preparation, the wait for the voice service included. */
  readonly timeoutMs?: number;
}

const VoiceParams = Type.Object({ id: VoiceId });

/**
 * `PUT /v1/voices/{id}` (issue 12, "Voices"): the gateway makes a new voice usable on this machine
 * before it stores it, and learns what the voice service heard in the recording. The reference is
 * a blob like a job's inputs (409 BLOB_MISSING until it is held); the speaker prepares it once per
 * voice container and remembers it (voice-preparer.ts), so asking again answers `prepared: false`.
 */
export function registerVoiceRoutes(root: FastifyInstance, deps: VoiceRouteDeps): void {
  const app = root.withTypeProvider<TypeBoxTypeProvider>();
  const timeoutMs = deps.timeoutMs ?? VOICE_PREPARE_TIMEOUT_MS;

  app.put(
    "/v1/voices/:id",
    {
      schema: {
        params: VoiceParams,
        body: PutVoiceBody,
        response: {
          200: PreparedVoiceView,
          400: {
            ...ErrorBody,
            description:
              "VOICE_REFERENCE_UNUSABLE (kind input): the voice service cannot use the recording (missing, " +
              "unreadable, no speech heard). INVALID_REQUEST: the body does not match the schema",
          },
          409: {
            ...ErrorBody,
            description: "BLOB_MISSING: upload the reference (PUT /v1/blobs/{sha256}) first",
          },
          422: {
            ...ErrorBody,
            description: "VOICE_CLONE_UNAVAILABLE: this worker cannot clone (capabilities.voice_clone false)",
          },
          503: {
            ...ErrorBody,
            description:
              "VOICE_SERVICE_UNAVAILABLE (kind machine): the voice service or its speech recognition is down, " +
              `or no answer within ${timeoutMs / 1000} s; WORKER_DRAINING: the agent is stopping`,
          },
          "4xx": ErrorBody,
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { reference } = request.body;
      const lang = request.body.lang ?? DEFAULT_SPEECH_LANG;
      const speaker = deps.speaker;
      if (!speaker?.canClone) {
        throw new AppError(
          "VOICE_CLONE_UNAVAILABLE",
          "this worker cannot clone a voice (capabilities.voice_clone is false): it needs a fish-speech container (--tts)",
        );
      }
      if (deps.draining()) {
        throw new AppError(
          "WORKER_DRAINING",
          "the worker agent is draining (it was asked to stop): it takes no new work",
        );
      }
      const log = request.log.child({ voice_id: id });
      // Kept from eviction while it is checked, linked and prepared.
      const release = deps.blobs.hold([reference.sha256]);
      const workDir = join(deps.layout.work, `voice-${randomUUID()}`);
      const gone = new AbortController();
      const onClose = () => gone.abort(new Error("the gateway went away"));
      reply.raw.once("close", onClose);
      const deadline = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([gone.signal, deadline]);
      let ready: VoiceReady;
      try {
        if (!(await deps.blobs.has(reference.sha256))) {
          throw new InputError(
            "BLOB_MISSING",
            `upload the reference blob ${reference.sha256} before the voice`,
            "reference",
          );
        }
        await makeDir(workDir);
        // The speaker hands the server wav, mp3 and flac as they are, by extension.
        const referencePath = join(workDir, `reference${extensionOf(reference.name)}`);
        await deps.blobs.linkTo(reference.sha256, referencePath);
        log.info({ sha256: reference.sha256, bytes: reference.bytes, lang }, "preparing voice");
        ready = await speaker.prepareVoice(
          {
            id,
            referencePath,
            referenceSha256: reference.sha256,
            referenceText: request.body.reference_text,
          },
          lang,
          signal,
        );
      } catch (err) {
        if (deadline.aborted) {
          throw new AppError(
            "VOICE_SERVICE_UNAVAILABLE",
            `the voice was not ready within ${timeoutMs / 1000} s: the voice service is busy or does not answer`,
          );
        }
        throw asAnswer(err, deps.layout.dataDir);
      } finally {
        reply.raw.off("close", onClose);
        release();
        await rm(workDir, { recursive: true, force: true });
      }
      log.info({ prepared: ready.prepared }, "voice ready");
      return reply.code(200).send({ id, reference_text: ready.referenceText, prepared: ready.prepared });
    },
  );
}

/** A speaker's failure as the gateway should read it: whose fault, by code; no paths of this machine. */
function asAnswer(err: unknown, dataDir: string): unknown {
  if (!(err instanceof EngineError)) return err;
  const message = errorMessage(err).replaceAll(dataDir, "<worker data dir>");
  return err.kind === "input"
    ? new AppError("VOICE_REFERENCE_UNUSABLE", message, "reference")
    : new AppError("VOICE_SERVICE_UNAVAILABLE", message);
}

function extensionOf(name: string | undefined): string {
  const ext = name === undefined ? "" : extname(name).toLowerCase();
  return /^\.[a-z0-9]{1,8}$/.test(ext) ? ext : ".wav";
}
