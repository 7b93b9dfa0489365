import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { killAll, run, type Started, startGatewayProcess } from "../helpers/processes.js";
import { python, requirePython } from "../helpers/python.js";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;

/** The seed's own Python clients, unchanged, against `npm start`'s embedded mode in a child process. */
describe.skipIf(python === undefined)("the seed's Python clients against an embedded gateway", () => {
  let dir: string;
  let gateway: Started;

  beforeAll(async () => {
    dir = await tempDir();
    await makeVideo(join(dir, "person.mp4"), { seconds: 2 });
    await makeAudio(join(dir, "speech.wav"), { seconds: 3.5 });
    await makeAudio(join(dir, "short.mp3"), { seconds: 1.2 });
    // cwd has no config/machines.json, so the gateway must fall back to its embedded worker.
    gateway = await startGatewayProcess(["--data-dir", join(dir, "data")], { cwd: dir });
  });

  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  it("logs that it runs an embedded ffmpeg worker", () => {
    expect(gateway.lines.some((l) => l.includes("running an embedded ffmpeg worker"))).toBe(true);
  });

  it("sync client (requests, fields audio/video) saves an MP4 as long as the audio", async () => {
    const out = join(dir, "sync.mp4");
    const res = await run(
      requirePython(),
      [join(EXAMPLES, "sync_client.py"), join(dir, "speech.wav"), join(dir, "person.mp4"), out],
      {
        env: { MULTI_HEYGEM_URL: gateway.url },
      },
    );
    expect(res.code, res.stderr).toBe(0);
    const media = await probe(out);
    expect(media.video).toBeDefined();
    expect(media.audio).toBeDefined();
    expect(Math.abs(media.durationSec - 3.5)).toBeLessThan(0.2);
  });

  it("async client (aiohttp, fields audio_file/video_file) polls and downloads the MP4", async () => {
    const out = join(dir, "async.mp4");
    const res = await run(
      requirePython(),
      [join(EXAMPLES, "async_client.py"), join(dir, "short.mp3"), join(dir, "person.mp4"), out],
      { env: { MULTI_HEYGEM_URL: gateway.url, MULTI_HEYGEM_POLL_SECONDS: "0.2" } },
    );
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain("completed");
    const media = await probe(out);
    expect(media.video?.width).toBe(320);
    expect(media.audio).toBeDefined();
    expect(Math.abs(media.durationSec - 1.2)).toBeLessThan(0.2);
  });

  it("avatar client (requests) uploads the video once and makes a video per audio", async () => {
    const out = join(dir, "avatar-out");
    const res = await run(
      requirePython(),
      [
        join(EXAMPLES, "avatar_client.py"),
        join(dir, "person.mp4"),
        out,
        join(dir, "speech.wav"),
        join(dir, "short.mp3"),
      ],
      { env: { MULTI_HEYGEM_URL: gateway.url, MULTI_HEYGEM_POLL_SECONDS: "0.2" } },
    );
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^avatar [0-9a-f-]{36} \(320x240, 2\.0 s\)$/m);
    for (const [name, seconds] of [
      ["speech", 3.5],
      ["short", 1.2],
    ] as const) {
      const media = await probe(join(out, `${name}.mp4`));
      expect(media.video?.width).toBe(320);
      expect(media.audio).toBeDefined();
      expect(Math.abs(media.durationSec - seconds)).toBeLessThan(0.2);
    }
    // One avatar, two tasks naming it.
    const avatars = (await (await fetch(`${gateway.url}/avatars`)).json()) as {
      avatars: { avatar_id: string }[];
    };
    expect(avatars.avatars).toHaveLength(1);
    const tasks = (await (await fetch(`${gateway.url}/tasks?limit=500`)).json()) as {
      tasks: { avatar_id: string | null }[];
    };
    expect(tasks.tasks.filter((t) => t.avatar_id === avatars.avatars[0]?.avatar_id)).toHaveLength(2);
  });

  it("text-to-video example (requests): text with a video, then with an avatar, saves the MP4 and the spoken WAV", async () => {
    const env = { MULTI_HEYGEM_URL: gateway.url, MULTI_HEYGEM_POLL_SECONDS: "0.2" };
    const example = join(EXAMPLES, "text_to_video.py");
    const out = join(dir, "hello.mp4");
    const res = await run(
      requirePython(),
      [example, "你好，欢迎。", out, "--video", join(dir, "person.mp4"), "--top-p", "0.6"],
      { env },
    );
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^task [0-9a-f-]{36}: zh text, about [\d.]+ s of speech$/m);
    const spoken = await probe(join(dir, "hello.wav"));
    expect(spoken.audio?.codec).toMatch(/^pcm/);
    const media = await probe(out);
    expect(media.video?.width).toBe(320);
    expect(media.audio).toBeDefined();
    expect(Math.abs(media.durationSec - spoken.durationSec)).toBeLessThan(0.2);

    const avatar = await fetch(`${gateway.url}/avatars`, {
      method: "POST",
      body: await taskForm({ video: { path: join(dir, "person.mp4") } }),
    });
    const avatarId = ((await avatar.json()) as { avatar_id: string }).avatar_id;
    const again = await run(
      requirePython(),
      [example, "Hello.", join(dir, "hello-en.mp4"), "--avatar-id", avatarId, "--lang", "en"],
      { env },
    );
    expect(again.code, again.stderr).toBe(0);
    expect((await probe(join(dir, "hello-en.mp4"))).audio).toBeDefined();
    expect((await probe(join(dir, "hello-en.wav"))).durationSec).toBeGreaterThan(0.2);

    // A voice the offline voice cannot clone: refused at once, said plainly.
    const refused = await run(
      requirePython(),
      [example, "你好", join(dir, "no.mp4"), "--avatar-id", avatarId, "--voice-id", "v1"],
      { env },
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused \(400 NO_VOICE_CLONE_MACHINE\)/);
  });

  it("keeps nothing half-written in the data dir", async () => {
    const tmp = await readdir(join(dir, "data", "blobs", ".tmp"));
    expect(tmp).toEqual([]);
  });
});
