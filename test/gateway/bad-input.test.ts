import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { filesUnder, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeNotMedia, makeVideo } from "../helpers/media.js";
import { sampleValue, scrape } from "../helpers/prometheus.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
type Form = Record<string, string | { path: string; name?: string }>;

/** Every bad request answers its 4xx with a JSON error naming the field, and changes nothing. */
describe("bad input", () => {
  let gateway: Gateway;
  let fixtures: string;
  let audio: string;
  let video: string;

  beforeAll(async () => {
    fixtures = await tempDir();
    audio = join(fixtures, "a.wav");
    video = join(fixtures, "v.mp4");
    await makeAudio(audio, { seconds: 1 });
    await makeVideo(video, { seconds: 1 });
    await makeNotMedia(join(fixtures, "notes.mp4"));
    await makeAudio(join(fixtures, "sound-only.m4a"), { seconds: 1 });
    await makeVideo(join(fixtures, "silent.mp4"), { seconds: 1 });
    // The gateway below allows 1 MB per file; this one is just over.
    await writeFile(join(fixtures, "big.bin"), Buffer.alloc(1024 * 1024 + 10, 7));
    gateway = await startTestGateway({ maxUploadMb: "1" });
  });

  afterAll(async () => {
    await gateway.close();
    await removeDir(gateway.dataDir);
    await removeDir(fixtures);
  });

  const cases: Array<{
    name: string;
    route?: string;
    form: () => Form;
    status: number;
    error: string;
    field: string;
  }> = [
    {
      name: "missing audio",
      form: () => ({ video: { path: video } }),
      status: 400,
      error: "MISSING_FIELD",
      field: "audio",
    },
    {
      name: "missing video (seed spelling audio_file)",
      form: () => ({ audio_file: { path: audio } }),
      status: 400,
      error: "MISSING_FIELD",
      field: "video",
    },
    {
      name: "audio that is not media",
      form: () => ({ audio: { path: join(fixtures, "notes.mp4") }, video: { path: video } }),
      status: 400,
      error: "INVALID_MEDIA",
      field: "audio",
    },
    {
      name: "video without a video stream",
      form: () => ({ audio: { path: audio }, video: { path: join(fixtures, "sound-only.m4a") } }),
      status: 400,
      error: "INVALID_MEDIA",
      field: "video",
    },
    {
      name: "audio without an audio stream, on /tasks/sync",
      route: "/tasks/sync",
      form: () => ({ audio: { path: join(fixtures, "silent.mp4") }, video: { path: video } }),
      status: 400,
      error: "INVALID_MEDIA",
      field: "audio",
    },
    {
      name: "file over the size limit",
      form: () => ({ audio: { path: audio }, video: { path: join(fixtures, "big.bin") } }),
      status: 413,
      error: "FILE_TOO_LARGE",
      field: "video",
    },
    {
      name: "callback_url that is not http(s)",
      form: () => ({ audio: { path: audio }, video: { path: video }, callback_url: "ftp://example/x" }),
      status: 400,
      error: "INVALID_FIELD",
      field: "callback_url",
    },
    {
      name: "pn that is not 0 or 1",
      form: () => ({ audio: { path: audio }, video: { path: video }, pn: "2" }),
      status: 400,
      error: "INVALID_FIELD",
      field: "pn",
    },
    {
      name: "an unknown file field",
      form: () => ({ audio: { path: audio }, video: { path: video }, picture: { path: video } }),
      status: 400,
      error: "UNKNOWN_FIELD",
      field: "picture",
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} ${c.error}, nothing stored`, async () => {
      const before = await filesUnder(gateway.dataDir);
      const res = await fetch(`${gateway.url}${c.route ?? "/tasks"}`, {
        method: "POST",
        body: await taskForm(c.form()),
      });
      expect(res.status).toBe(c.status);
      expect(res.headers.get("content-type")).toContain("application/json");
      const body = (await res.json()) as { error: string; message: string; field?: string };
      expect(body.error).toBe(c.error);
      expect(body.message.length).toBeGreaterThan(5);
      expect(body.field).toBe(c.field);
      expect(await filesUnder(gateway.dataDir)).toEqual(before);
      expect((await gateway.store.listTasks({ limit: 10, offset: 0 })).total).toBe(0);
      // Nor in memory: a refused upload held there gives its bytes back.
      expect(sampleValue(await scrape(gateway.url), "multi_heygem_upload_held_bytes")).toBe(0);
    });
  }

  it("a body that is not multipart → 415", async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ audio: "x" }),
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: string }).error).toBe("NOT_MULTIPART");
  });

  it("an unknown task id → 404 JSON on every task route", async () => {
    for (const path of ["", "/events", "/result"]) {
      const res = await fetch(`${gateway.url}/tasks/00000000-0000-0000-0000-000000000000${path}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBe("NOT_FOUND");
    }
  });

  it("a bad list filter → 400", async () => {
    const res = await fetch(`${gateway.url}/tasks?status=lost`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("INVALID_REQUEST");
  });
});
