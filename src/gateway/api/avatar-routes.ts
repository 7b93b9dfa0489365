import { randomUUID } from "node:crypto";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { BlobStore } from "../../blobs/blob-store.js";
import { ConflictError, NotFoundError } from "../../errors.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import { forLog } from "../../logger.js";
import type { AvatarStore } from "../../store/avatar-store.js";
import type { AvatarRow } from "../../store/schema.js";
import { ownerScope, taskOwner, visibleAvatar } from "../auth/access-control.js";
import type { AvatarWarmer } from "../avatar-warmer.js";
import type { DataDirHealth } from "../data-dir-health.js";
import type { MediaInspector } from "../media-inspector.js";
import { receiveAvatarUpload } from "./avatar-upload.js";
import { assertFiniteQuery } from "./finite-query.js";
import {
  AvatarForm,
  AvatarIdParams,
  AvatarList,
  AvatarListQuery,
  AvatarView,
  AvatarWarming,
  ErrorBody,
} from "./schemas.js";
import { discardBody, type UploadDeadlineOptions } from "./upload-deadline.js";

export interface AvatarRoutesOptions {
  avatars: AvatarStore;
  blobs: BlobStore;
  inspector: MediaInspector;
  maxUploadBytes: number;
  dataDir: DataDirHealth;
  upload: UploadDeadlineOptions;
  warmer: AvatarWarmer;
  /** Deletes the files of `shas` that no row needs (RetentionSweeper.releaseBlobs). */
  releaseBlobs: (shas: readonly string[]) => Promise<void>;
}

/** Avatars (issue 12): a template video uploaded once, named by tasks with `avatar_id`. */
export async function avatarRoutes(app: FastifyInstance, options: AvatarRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { avatars, blobs, warmer } = options;
  const view = (avatar: AvatarRow): AvatarView => ({
    avatar_id: avatar.id,
    name: avatar.name,
    sha256: avatar.sha256,
    bytes: avatar.bytes,
    duration: avatar.duration,
    width: avatar.width,
    height: avatar.height,
    fps: avatar.fps,
    owner: avatar.owner,
    created_at: avatar.created_at,
    machines: warmer.holders(avatar.sha256),
  });
  const warm = (avatar: AvatarRow) =>
    warmer.warm({ sha256: avatar.sha256, bytes: avatar.bytes }, { avatar_id: avatar.id });

  const create = async (request: FastifyRequest): Promise<AvatarView> => {
    try {
      await options.dataDir.assertRoomFor(Number(request.headers["content-length"]) || 0);
    } catch (err) {
      await discardBody(request.raw, options.upload);
      throw err;
    }
    const upload = await receiveAvatarUpload(request, {
      blobs,
      inspector: options.inspector,
      maxBytes: options.maxUploadBytes,
      deadline: options.upload,
    });
    let avatar: AvatarRow;
    try {
      // The video stays in place against a retention sweep deciding on the same content now.
      avatar = await blobs.commitWhile([upload.video], () =>
        avatars.create({
          id: randomUUID(),
          owner: taskOwner(request),
          name: upload.name,
          sha256: upload.video.sha256,
          fileName: upload.fileName,
          bytes: upload.video.bytes,
          duration: upload.media.durationSec,
          width: upload.media.video.width,
          height: upload.media.video.height,
          fps: upload.media.video.fps,
        }),
      );
    } catch (err) {
      await upload.video.discard();
      throw err;
    }
    request.log.info(
      {
        avatar_id: avatar.id,
        ...(avatar.name ? { name: forLog(avatar.name) } : {}),
        bytes: avatar.bytes,
        sha256: avatar.sha256,
      },
      "avatar created",
    );
    if (!upload.warm) return view(avatar);
    return { ...view(avatar), warming: (await warm(avatar)).sending };
  };

  api.post(
    "/avatars",
    {
      schema: {
        summary: "Upload a template video once, for many tasks",
        description:
          "Stores the video (multipart/form-data, checked like a task's video) and answers with its avatar. " +
          "Tasks then send avatar_id instead of the video, and upload only their audio. The same video " +
          "uploaded twice makes two avatars that share one stored file. With warm=true the video is also " +
          "sent to every up machine at once (as POST /avatars/{avatar_id}/warm).",
        tags: ["avatars"],
        consumes: ["multipart/form-data"],
        response: {
          201: Type.Ref(AvatarView),
          400: Type.Ref(ErrorBody),
          408: Type.Ref(ErrorBody),
          413: Type.Ref(ErrorBody),
          415: Type.Ref(ErrorBody),
          503: Type.Ref(ErrorBody),
          507: Type.Ref(ErrorBody),
        },
      },
      config: { multipartForm: AvatarForm, access: "submit" },
    },
    async (request, reply) => reply.code(201).send(await create(request)),
  );

  api.get(
    "/avatars",
    {
      config: { access: "submit" },
      schema: {
        summary: "List avatars, newest first",
        tags: ["avatars"],
        querystring: AvatarListQuery,
        response: { 200: Type.Ref(AvatarList), 400: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      assertFiniteQuery({ limit, offset });
      const owner = ownerScope(request);
      const page = await avatars.list({ ...(owner === undefined ? {} : { owner }), limit, offset });
      return { avatars: page.avatars.map(view), total: page.total, limit, offset };
    },
  );

  api.get(
    "/avatars/:avatar_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "An avatar",
        tags: ["avatars"],
        params: AvatarIdParams,
        response: { 200: Type.Ref(AvatarView), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => view(await visibleAvatar(avatars, request, request.params.avatar_id)),
  );

  api.post(
    "/avatars/:avatar_id/warm",
    {
      config: { access: "submit" },
      schema: {
        summary: "Send the avatar's video to every up machine that lacks it, now",
        description:
          "Asks each up machine whether it holds the video and sends it, in the background, to those that " +
          "do not; answers 202 with both lists. Without a warm, a machine gets the video with its first task " +
          "that needs it. A machine that fails is logged and skipped; a worker's input cache (--cache-max-gb) " +
          "may drop the video later, and the next task there sends it again.",
        tags: ["avatars"],
        params: AvatarIdParams,
        response: { 202: Type.Ref(AvatarWarming), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request, reply) => {
      const avatar = await visibleAvatar(avatars, request, request.params.avatar_id);
      return reply.code(202).send({ avatar_id: avatar.id, ...(await warm(avatar)) });
    },
  );

  api.delete(
    "/avatars/:avatar_id",
    {
      config: { access: "submit" },
      schema: {
        summary: "Delete an avatar",
        description:
          "Refused with 409 AVATAR_IN_USE while a pending or processing task uses it. Its video is deleted " +
          "once no task needs it either (finished tasks keep theirs until --retention). Tasks made from it " +
          "keep their avatar_id. Answers 204 without a body.",
        tags: ["avatars"],
        params: AvatarIdParams,
        response: {
          204: Type.Null({ description: "Deleted" }),
          404: Type.Ref(ErrorBody),
          409: { ...Type.Ref(ErrorBody), description: "AVATAR_IN_USE: a pending or processing task uses it" },
        },
      },
    },
    async (request, reply) => {
      const avatar = await visibleAvatar(avatars, request, request.params.avatar_id);
      const deletion = await avatars.delete(avatar.id);
      if (deletion.outcome === "missing") throw new NotFoundError(`no avatar ${avatar.id}`);
      if (deletion.outcome === "in_use") {
        throw new ConflictError(
          "AVATAR_IN_USE",
          `avatar ${avatar.id} is used by ${deletion.liveTasks} pending or processing task` +
            `${deletion.liveTasks === 1 ? "" : "s"}: cancel them or wait until they finish`,
        );
      }
      await options.releaseBlobs(deletion.blobs);
      request.log.info({ avatar_id: avatar.id, freed: deletion.blobs.length > 0 }, "avatar deleted");
      return reply.code(204).send(null);
    },
  );
}
