import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { StreamedBody } from "../http.js";

/**
 * Many different template videos of one size, without writing them to disk: each is one valid
 * H.264 MP4 followed by an MP4 `free` box of its own (players and ffprobe skip it), so each has
 * its own SHA-256 and is, to the gateway and the workers, a different file (blobs are
 * content-addressed whole). They exist only as the avatar uploads that carry them, streamed from
 * the one MP4 in the page cache; the gateway's and the workers' copies are what lands on disk.
 */
export interface Template {
  readonly name: string;
  readonly bytes: number;
  /** `POST /avatars` with this template as its video (and its name as the avatar's). */
  avatarForm(): StreamedBody;
}

export async function distinctTemplates(base: string, count: number): Promise<Template[]> {
  const baseBytes = (await stat(base)).size;
  return Array.from({ length: count }, (_, i) => {
    const name = `template-${String(i + 1).padStart(2, "0")}.mp4`;
    const payload = Buffer.concat([Buffer.from(`multi-heygem bench ${name} `), randomBytes(16)]);
    const box = Buffer.alloc(8);
    box.writeUInt32BE(8 + payload.length, 0);
    box.write("free", 4, "latin1");
    const tail = Buffer.concat([box, payload]);
    return {
      name,
      bytes: baseBytes + tail.length,
      avatarForm: () => form(name, base, baseBytes, tail),
    };
  });
}

/** The same multipart framing as http.ts's multipartBody, with the file's bytes made on the fly. */
function form(name: string, base: string, baseBytes: number, tail: Buffer): StreamedBody {
  const boundary = `----mh-bench-${randomBytes(12).toString("hex")}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n${name}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="video"; filename="${name}"\r\n` +
      "Content-Type: application/octet-stream\r\n\r\n",
  );
  const end = Buffer.from(`\r\n--${boundary}--\r\n`);
  async function* generate() {
    yield head;
    yield* createReadStream(base, { highWaterMark: 256 * 1024 });
    yield tail;
    yield end;
  }
  return {
    body: Readable.from(generate(), { objectMode: false }),
    length: head.length + baseBytes + tail.length + end.length,
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}
