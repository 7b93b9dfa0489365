import { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Engine } from "../engines/engine.js";
import { InputError, InsufficientStorageError } from "../errors.js";
import { sendFile } from "../http/send-file.js";
import type { TypeBoxTypeProvider } from "../http/typebox-provider.js";
import {
  ErrorBody,
  GetJobQuery,
  Health,
  JobId,
  JobView,
  PROTOCOL_VERSION,
  PutJobBody,
  Sha256,
  StoredBlob,
} from "../protocol/schemas.js";
import type { BlobCache, StatFs } from "./blob-cache.js";
import type { JobRunner } from "./job-runner.js";

export interface WorkerRouteDeps {
  readonly engine: Engine;
  readonly blobs: BlobCache;
  readonly runner: JobRunner;
  readonly statfs: StatFs;
  readonly dataDir: string;
  readonly version: string;
}

const BlobParams = Type.Object({ sha256: Sha256 });
const JobParams = Type.Object({ id: JobId });
const Mp4 = Type.String({
  format: "binary",
  description: "The MP4 (video/mp4), or the requested byte range",
});

/** The /v1 worker protocol (design.md, "Worker protocol"), as seen from the worker's side. */
export async function registerWorkerRoutes(root: FastifyInstance, deps: WorkerRouteDeps): Promise<void> {
  const { engine, blobs, runner } = deps;
  const app = root.withTypeProvider<TypeBoxTypeProvider>();

  /**
   * The cache's limit is soft (blob-cache.ts), so only the disk itself refuses an upload: when
   * what the cache can give up would not make room for it. Without a length, a full disk shows
   * as the write's ENOSPC, which the error handler answers with the same 507.
   */
  const refuseWhenDiskFull = async (contentLength: string | undefined) => {
    const bytes = Number(contentLength);
    if (contentLength === undefined || !Number.isSafeInteger(bytes) || bytes <= 0) return;
    if ((await blobs.makeRoom(bytes, deps.statfs)) >= bytes) return;
    throw new InsufficientStorageError(
      `the worker's disk has no room for ${bytes} bytes, even after emptying its blob cache of what no job needs`,
    );
  };

  app.get(
    "/v1/health",
    { schema: { response: { 200: Health, "4xx": ErrorBody } } },
    async (): Promise<Health> => {
      const disk = await deps.statfs(deps.dataDir);
      const instances = engine.instances?.();
      const held = engine.held?.();
      return {
        protocol: PROTOCOL_VERSION,
        engine: engine.name,
        version: deps.version,
        max_concurrent: Math.max(1, Math.floor(engine.capacity)),
        state: runner.isDraining ? "draining" : "ready",
        running: runner.runningIds,
        queued: runner.queuedIds,
        free_disk_bytes: disk.bavail * disk.bsize,
        ...(held === undefined ? {} : { held }),
        ...(instances === undefined ? {} : { instances }),
      };
    },
  );

  app.head("/v1/blobs/:sha256", { schema: { params: BlobParams } }, async (request, reply) => {
    const blob = await blobs.has(request.params.sha256);
    if (!blob) return reply.code(404).send();
    return reply.code(200).header("content-length", String(blob.bytes)).send();
  });

  await app.register(async (scope) => {
    // Blob bodies reach the handler as the raw request stream, whatever their content type, so
    // they go to disk as they arrive; bodyLimit does not apply to a parser that does not read.
    const passThrough = (_request: unknown, payload: unknown, done: (err: null, body: unknown) => void) =>
      done(null, payload);
    scope.addContentTypeParser("application/octet-stream", passThrough);
    scope.addContentTypeParser("*", passThrough);

    scope
      .withTypeProvider<TypeBoxTypeProvider>()
      .put(
        "/v1/blobs/:sha256",
        {
          schema: {
            params: BlobParams,
            response: { 200: StoredBlob, 201: StoredBlob, "4xx": ErrorBody, 507: ErrorBody },
          },
        },
        async (request, reply) => {
          const { sha256 } = request.params;
          const body = request.body instanceof Readable ? request.body : Readable.from([]);
          const present = await blobs.has(sha256);
          if (present) {
            await blobs.uploadedAgain(sha256);
            // Read to the end so the connection can carry the next request.
            body.resume();
            await finished(body);
            return reply.code(200).send(present);
          }
          await refuseWhenDiskFull(request.headers["content-length"]);
          const staged = await blobs.stage(body, {
            expectedSha256: sha256,
            onMismatch: (actual) =>
              new InputError("BLOB_HASH_MISMATCH", `the uploaded content hashes to ${actual}, not ${sha256}`),
          });
          await staged.commit();
          return reply.code(201).send({ sha256, bytes: staged.bytes });
        },
      )
      // A blob whose hash the sender does not know yet: the gateway forwards an upload while its
      // client is still sending it, so the machine has the video by the time the task is placed.
      .post(
        "/v1/blobs",
        { schema: { response: { 200: StoredBlob, 201: StoredBlob, "4xx": ErrorBody, 507: ErrorBody } } },
        async (request, reply) => {
          const body = request.body instanceof Readable ? request.body : Readable.from([]);
          await refuseWhenDiskFull(request.headers["content-length"]);
          const staged = await blobs.stage(body);
          const stored = { sha256: staged.sha256, bytes: staged.bytes };
          if (await blobs.has(staged.sha256)) {
            await staged.discard();
            return reply.code(200).send(stored);
          }
          await staged.commit();
          return reply.code(201).send(stored);
        },
      );
  });

  // Undoes a forwarded upload whose task was then refused. Jobs hold their inputs as links in
  // their own folders, so removing the cache entry never pulls a file from under a running job.
  // Only the worker's own copy goes: a shared store's blobs (the gateway's) are not its to delete.
  app.delete("/v1/blobs/:sha256", { schema: { params: BlobParams } }, async (request, reply) => {
    await blobs.remove(request.params.sha256);
    return reply.code(204).send();
  });

  app.put(
    "/v1/jobs/:id",
    {
      schema: {
        params: JobParams,
        body: PutJobBody,
        response: {
          200: JobView,
          201: JobView,
          "4xx": ErrorBody,
          503: {
            ...ErrorBody,
            description:
              "WORKER_DRAINING: the agent is stopping (health state draining) and takes no new job; the " +
              "gateway queues the task again elsewhere. SHUTTING_DOWN: it is closing",
          },
        },
      },
    },
    async (request, reply) => {
      const { view, created } = await runner.submit(request.params.id, request.body);
      return reply.code(created ? 201 : 200).send(view);
    },
  );

  app.get(
    "/v1/jobs/:id",
    { schema: { params: JobParams, querystring: GetJobQuery, response: { 200: JobView, "4xx": ErrorBody } } },
    async (request, reply) => {
      const { wait_ms = 0, after_version } = request.query;
      const gone = new AbortController();
      const onClose = () => gone.abort();
      reply.raw.once("close", onClose);
      try {
        return await runner.waitForChange(request.params.id, after_version, wait_ms, gone.signal);
      } finally {
        reply.raw.off("close", onClose);
      }
    },
  );

  const resultRoute = {
    schema: { params: JobParams, response: { 200: Mp4, 206: Mp4, "4xx": ErrorBody } },
  } as const;
  // HEAD is its own route: Fastify's automatic one would read the whole file and drop its length.
  app.get("/v1/jobs/:id/result", { ...resultRoute, exposeHeadRoute: false }, async (request, reply) => {
    const { id } = request.params;
    return sendFile(request, reply, runner.resultPath(id), {
      contentType: "video/mp4",
      downloadName: `${id}.mp4`,
    });
  });
  app.head("/v1/jobs/:id/result", resultRoute, async (request, reply) =>
    sendFile(request, reply, runner.resultPath(request.params.id), { contentType: "video/mp4" }),
  );

  app.delete(
    "/v1/jobs/:id",
    { schema: { params: JobParams, response: { 200: JobView, "4xx": ErrorBody } } },
    async (request) => runner.delete(request.params.id),
  );
}
