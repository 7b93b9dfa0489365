import { randomUUID } from "node:crypto";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { BlobStore } from "../../blobs/blob-store.js";
import { AppError, ConflictError, errorMessage, InputError, NotFoundError } from "../../errors.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import { forLog } from "../../logger.js";
import type { AvatarStore } from "../../store/avatar-store.js";
import type { VoiceRow } from "../../store/schema.js";
import type { VoiceStore } from "../../store/voice-store.js";
import { ownerScope, taskOwner, visibleVoice } from "../auth/access-control.js";
import type { DataDirHealth } from "../data-dir-health.js";
import type { MediaInspector } from "../media-inspector.js";
import type { VoiceMaker } from "../voice-maker.js";
import { assertFiniteQuery } from "./finite-query.js";
import { ErrorBody, VoiceForm, VoiceIdParams, VoiceList, VoiceListQuery, VoiceView } from "./schemas.js";
import { discardBody, type UploadDeadlineOptions } from "./upload-deadline.js";
import { receiveVoiceUpload } from "./voice-upload.js";

export interface VoiceRoutesOptions {
  voices: VoiceStore;
  avatars: AvatarStore;
  blobs: BlobStore;
  inspector: MediaInspector;
  maker: VoiceMaker;
  maxUploadBytes: number;
  dataDir: DataDirHealth;
  upload: UploadDeadlineOptions;
  /** Aborts when the gateway stops: a voice being prepared is then not stored. */
  shutdown: AbortSignal;
  /** Deletes the files of `shas` that no row needs (RetentionSweeper.releaseBlobs). */
  releaseBlobs: (shas: readonly string[]) => Promise<void>;
}

/**
 * Voices (issue 12): a reference recording, uploaded or taken from an avatar's sound, prepared on a
 * machine that can clone before it is stored, then named by text tasks with `voice_id`.
 */
export async function voiceRoutes(app: FastifyInstance, options: VoiceRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { voices, avatars, blobs } = options;
  const view = (voice: VoiceRow): VoiceView => ({
    voice_id: voice.id,
    name: voice.name,
    lang: voice.lang,
    sha256: voice.sha256,
    bytes: voice.bytes,
    duration: voice.duration,
    reference_text: voice.reference_text,
    avatar_id: voice.avatar_id,
    owner: voice.owner,
    created_at: voice.created_at,
  });

  const create = async (request: FastifyRequest): Promise<VoiceView> => {
    try {
      await options.dataDir.assertRoomFor(Number(request.headers["content-length"]) || 0);
    } catch (err) {
      await discardBody(request.raw, options.upload);
      throw err;
    }
    const owner = ownerScope(request);
    const upload = await receiveVoiceUpload(request, {
      blobs,
      inspector: options.inspector,
      maxBytes: options.maxUploadBytes,
      deadline: options.upload,
      avatar: async (id) => {
        const avatar = await avatars.get(id);
        if (!avatar || (owner !== undefined && avatar.owner !== owner)) {
          throw new InputError(
            "UNKNOWN_AVATAR",
            `no avatar ${id}: create one with POST /avatars`,
            "avatar_id",
          );
        }
        return avatar;
      },
    });
    const id = randomUUID();
    const log = request.log.child({ voice_id: id });
    log.info(
      {
        from: upload.avatarId === null ? "audio" : `avatar ${upload.avatarId}`,
        sha256: upload.reference.sha256,
        bytes: upload.reference.bytes,
        duration: upload.duration,
        lang: upload.lang,
      },
      "voice: recording received",
    );
    // Nobody would learn of a voice made for a client that has gone, nor while the gateway stops.
    const gone = new AbortController();
    const onClose = () => gone.abort(new Error("the client went away"));
    request.raw.socket?.once("close", onClose);
    let voice: VoiceRow;
    try {
      const made = await options.maker.make(
        {
          id,
          lang: upload.lang,
          reference: {
            sha256: upload.reference.sha256,
            bytes: upload.reference.bytes,
            name: upload.fileName,
            path: upload.reference.path,
          },
          field: upload.field,
        },
        AbortSignal.any([gone.signal, options.shutdown]),
        log,
      );
      // The recording stays in place against a retention sweep deciding on the same content now.
      voice = await blobs.commitWhile([upload.reference], () =>
        voices.create({
          id,
          owner: taskOwner(request),
          name: upload.name,
          lang: upload.lang,
          sha256: upload.reference.sha256,
          fileName: upload.fileName,
          bytes: upload.reference.bytes,
          duration: upload.duration,
          referenceText: made.referenceText,
          avatarId: upload.avatarId,
        }),
      );
      log.info(
        {
          ...(voice.name ? { name: forLog(voice.name) } : {}),
          machine: made.machine,
          prepared: made.prepared,
        },
        "voice created",
      );
    } catch (err) {
      log.info({ reason: errorMessage(err) }, "voice not created");
      if (options.shutdown.aborted) {
        throw new AppError(
          "SHUTTING_DOWN",
          "the gateway is stopping; nothing was stored: send the voice again",
        );
      }
      // Nobody is left to read the answer; said as the client's, not as a bug of the gateway.
      if (gone.signal.aborted)
        throw new AppError("BAD_REQUEST", "the client went away before the voice was made");
      throw err;
    } finally {
      request.raw.socket?.off("close", onClose);
      await upload.reference.discard();
    }
    return view(voice);
  };

  api.post(
    "/voices",
    {
      schema: {
        summary: "Make a voice from a recording, or from an avatar's own sound",
        description:
          "Takes a recording of the voice (multipart audio, checked like a task's audio, at most 300 s) or an " +
          "avatar_id (its video's sound track is taken out, its first 300 s), and prepares it on one up machine " +
          "that can clone (a fish-speech container): the machine's speech recognition transcribes it " +
          "(reference_text). Only then is the voice stored and answered. Other machines prepare it the first " +
          "time a text task needs it there. A refusal leaves nothing stored.",
        tags: ["voices"],
        consumes: ["multipart/form-data"],
        response: {
          201: Type.Ref(VoiceView),
          400: {
            ...Type.Ref(ErrorBody),
            description:
              "Bad input (`field` names it): a missing or empty recording, not audio, longer than 300 s " +
              "(AUDIO_TOO_LONG), both audio and avatar_id (AUDIO_AND_AVATAR), an unknown avatar (UNKNOWN_AVATAR), " +
              "an avatar without sound (AVATAR_HAS_NO_AUDIO), a bad lang, or a recording the voice service " +
              "cannot use: no speech heard in it (VOICE_REFERENCE_UNUSABLE)",
          },
          408: Type.Ref(ErrorBody),
          413: Type.Ref(ErrorBody),
          415: Type.Ref(ErrorBody),
          422: {
            ...Type.Ref(ErrorBody),
            description:
              "VOICE_CLONE_UNAVAILABLE: no machine of this gateway can clone a voice (none has a fish-speech " +
              "container; the embedded worker cannot)",
          },
          503: {
            ...Type.Ref(ErrorBody),
            description:
              "VOICE_SERVICE_UNAVAILABLE: machines that can clone exist but none is up, or each one failed " +
              "(voice service or its speech recognition down); try again after Retry-After. Also the " +
              "gateway stopping, or its store unavailable",
          },
          507: Type.Ref(ErrorBody),
        },
      },
      config: { multipartForm: VoiceForm, access: "submit" },
    },
    async (request, reply) => reply.code(201).send(await create(request)),
  );

  api.get(
    "/voices",
    {
      config: { access: "submit" },
      schema: {
        summary: "List voices, newest first",
        tags: ["voices"],
        querystring: VoiceListQuery,
        response: { 200: Type.Ref(VoiceList), 400: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      assertFiniteQuery({ limit, offset });
      const owner = ownerScope(request);
      const page = await voices.list({ ...(owner === undefined ? {} : { owner }), limit, offset });
      return { voices: page.voices.map(view), total: page.total, limit, offset };
    },
  );

  api.get(
    "/voices/:voice_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "A voice",
        tags: ["voices"],
        params: VoiceIdParams,
        response: { 200: Type.Ref(VoiceView), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => view(await visibleVoice(voices, request, request.params.voice_id)),
  );

  api.delete(
    "/voices/:voice_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "Delete a voice",
        description:
          "Refused with 409 VOICE_IN_USE while a pending or processing task speaks in it. Its recording is " +
          "deleted once no task or other voice needs it. Answers 204 without a body.",
        tags: ["voices"],
        params: VoiceIdParams,
        response: {
          204: Type.Null({ description: "Deleted" }),
          404: Type.Ref(ErrorBody),
          409: {
            ...Type.Ref(ErrorBody),
            description: "VOICE_IN_USE: a pending or processing task speaks in it",
          },
        },
      },
    },
    async (request, reply) => {
      const voice = await visibleVoice(voices, request, request.params.voice_id);
      const deletion = await voices.delete(voice.id);
      if (deletion.outcome === "missing") throw new NotFoundError(`no voice ${voice.id}`);
      if (deletion.outcome === "in_use") {
        throw new ConflictError(
          "VOICE_IN_USE",
          `voice ${voice.id} is used by ${deletion.liveTasks} pending or processing task` +
            `${deletion.liveTasks === 1 ? "" : "s"}: cancel them or wait until they finish`,
        );
      }
      await options.releaseBlobs(deletion.blobs);
      request.log.info({ voice_id: voice.id, freed: deletion.blobs.length > 0 }, "voice deleted");
      return reply.code(204).send(null);
    },
  );
}
