import { randomBytes } from "node:crypto";
import { appendFile, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { mapLimit } from "../harness.js";
import { type FileFacts, fileFacts, type MediaKit } from "../media.js";

/**
 * Many different template videos of one size, cheaply: copies of one valid H.264 MP4, each ending
 * in an MP4 `free` box of its own (players and ffprobe skip it), so each has its own SHA-256 and
 * is, to the gateway and the workers, a different file (blobs are content-addressed whole).
 */
export async function distinctTemplates(
  media: MediaKit,
  dir: string,
  count: number,
  bytes: number,
): Promise<FileFacts[]> {
  const base = await media.bigVideo(bytes);
  return mapLimit(
    Array.from({ length: count }, (_, i) => i),
    2,
    async (i) => {
      const path = join(dir, `template-${String(i + 1).padStart(2, "0")}.mp4`);
      await copyFile(base, path);
      const payload = Buffer.concat([Buffer.from(`multi-heygem bench template ${i + 1} `), randomBytes(16)]);
      const box = Buffer.alloc(8);
      box.writeUInt32BE(8 + payload.length, 0);
      box.write("free", 4, "latin1");
      await appendFile(path, Buffer.concat([box, payload]));
      return fileFacts(path);
    },
  );
}
