import { open } from "node:fs/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import { errorBody, httpStatus } from "../error-codes.js";
import { NotFoundError } from "../errors.js";
import { readChunkFor } from "../read-chunk.js";

export interface SendFileOptions {
  contentType: string;
  /** Offered to browsers as the file name to save under (Content-Disposition: attachment). */
  downloadName?: string;
}

/** A single byte range, both ends inclusive (RFC 9110 §14.1.2). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Streams a file as the reply, honouring a single `Range: bytes=…` (206 / 416) and HEAD. The file is
 * opened once and read through that handle, so a concurrent delete (retention sweep) cannot cut a
 * download short or make its length lie.
 *
 * Register HEAD routes explicitly (`exposeHeadRoute: false` on the GET): Fastify's automatic HEAD
 * would read the whole stream and overwrite Content-Length.
 */
export async function sendFile(
  request: FastifyRequest,
  reply: FastifyReply,
  path: string,
  options: SendFileOptions,
): Promise<FastifyReply> {
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new NotFoundError("the file is no longer here");
    throw err;
  }
  try {
    const { size, mtime } = await file.stat();
    void reply
      .header("accept-ranges", "bytes")
      .header("last-modified", mtime.toUTCString())
      .type(options.contentType);
    if (options.downloadName !== undefined) {
      void reply.header("content-disposition", contentDisposition(options.downloadName));
    }

    const range = parseRange(request.headers.range, size);
    if (range === "unsatisfiable") {
      await file.close();
      const body = errorBody("RANGE_NOT_SATISFIABLE", `the file has ${size} bytes`);
      return reply
        .code(httpStatus("RANGE_NOT_SATISFIABLE"))
        .header("content-range", `bytes */${size}`)
        .type("application/json")
        .send(body);
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    if (range) void reply.code(206).header("content-range", `bytes ${start}-${end}/${size}`);
    void reply.header("content-length", String(end - start + 1));

    if (request.method === "HEAD" || size === 0) {
      await file.close();
      return reply.send();
    }
    // The stream owns the handle from here and closes it when done or destroyed (client gone).
    return reply.send(
      file.createReadStream({ start, end, autoClose: true, highWaterMark: readChunkFor(end - start + 1) }),
    );
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

/**
 * `undefined` means "send the whole file": no header, a header we do not understand, or several
 * ranges (RFC 9110 lets a server ignore Range; one range is all a video player or resumer asks for).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | "unsatisfiable" | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== "" && Number(last) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

/** `attachment` under `name`, which may hold any character (RFC 6266 with RFC 8187's filename*). */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
