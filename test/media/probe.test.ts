import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import { MediaError, parseProbeOutput, probeMedia } from "../../src/media/probe.js";
import { makeAudio, makeAudioWithCover, makeNotMedia, makeVideo } from "../helpers/media.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "probe-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("probeMedia", () => {
  it("describes an MP4 with video and audio", async () => {
    const path = join(dir, "v.mp4");
    await makeVideo(path, { seconds: 1, width: 160, height: 120, fps: 25, withAudio: true });
    const info = await probeMedia(path);
    expect(info.formatName).toContain("mp4");
    expect(info.durationSec).toBeCloseTo(1, 1);
    expect(info.video).toMatchObject({ codec: "h264", width: 160, height: 120, fps: 25, pixFmt: "yuv420p" });
    expect(info.video?.frameRate).toBe("25/1");
    expect(info.video?.frames).toBe(25);
    expect(info.audio).toMatchObject({ codec: "aac", sampleRate: 44_100, channels: 1 });
    expect(info.audio?.durationSec).toBeCloseTo(1, 1);
  });

  it.each([
    ["a.wav", "pcm_s16le"],
    ["a.mp3", "mp3"],
    ["a.m4a", "aac"],
  ])("describes audio-only %s", async (name, codec) => {
    const path = join(dir, name);
    await makeAudio(path, { seconds: 1.5, sampleRate: 16_000 });
    const info = await probeMedia(path);
    expect(info.video).toBeUndefined();
    expect(info.audio).toMatchObject({ codec, sampleRate: 16_000, channels: 1 });
    expect(Math.abs(info.durationSec - 1.5)).toBeLessThan(0.1);
  });

  it("does not count MP3 cover art as video", async () => {
    const path = join(dir, "cover.mp3");
    await makeAudioWithCover(path, { seconds: 1 });
    const info = await probeMedia(path);
    expect(info.audio?.codec).toBe("mp3");
    expect(info.video).toBeUndefined();
  });

  it("rejects a file that is not media with a MediaError, an InputError", async () => {
    const path = join(dir, "notes.mp4");
    await makeNotMedia(path);
    const err = await probeMedia(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ code: "MEDIA_UNREADABLE", statusCode: 400 });
    expect((err as Error).message).toMatch(/^not a media file ffprobe can read: \S/);
  });

  it("refuses playlists, manifests and concat lists, fetches nothing, and names no path", async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests += 1;
      res.end("#EXTM3U\n");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const secret = join(dir, "secret.wav");
    await makeAudio(secret, { seconds: 0.5 });
    const lists: Array<[string, string]> = [
      ["hls-local", `#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile://${secret}\n#EXT-X-ENDLIST\n`],
      ["hls-remote", `#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n${base}/a.ts\n#EXT-X-ENDLIST\n`],
      [
        "dash",
        `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S"><Period><AdaptationSet mimeType="audio/mp4"><Representation id="1" bandwidth="1000"><BaseURL>${base}/a.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>\n`,
      ],
      ["concat", `ffconcat version 1.0\nfile '${secret}'\n`],
    ];
    try {
      for (const [name, body] of lists) {
        const path = join(dir, name);
        await writeFile(path, body);
        const err = await probeMedia(path).catch((e: unknown) => e);
        expect(err, name).toBeInstanceOf(MediaError);
        expect((err as Error).message, name).not.toContain(dir);
      }
      expect(requests).toBe(0);
    } finally {
      server.close();
    }
  });

  it("rejects with an AbortError when the signal is already aborted", async () => {
    const path = join(dir, "a.wav");
    await makeAudio(path, { seconds: 0.5 });
    await expect(probeMedia(path, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: "AbortError",
    });
  });
});

describe("parseProbeOutput", () => {
  it("falls back to r_frame_rate and the longest stream when the container states no duration", () => {
    const info = parseProbeOutput(
      JSON.stringify({
        format: { format_name: "h264", duration: "N/A" },
        streams: [
          {
            index: 0,
            codec_type: "video",
            codec_name: "h264",
            width: 64,
            height: 48,
            avg_frame_rate: "0/0",
            r_frame_rate: "30000/1001",
            duration: "2.5",
            pix_fmt: "yuv420p",
          },
        ],
      }),
    );
    expect(info.durationSec).toBe(2.5);
    expect(info.video?.fps).toBeCloseTo(29.97, 2);
    expect(info.video?.frameRate).toBe("30000/1001");
  });

  it("calls a file without streams not media", () => {
    expect(() => parseProbeOutput(JSON.stringify({ format: {}, streams: [] }))).toThrow(MediaError);
  });
});
