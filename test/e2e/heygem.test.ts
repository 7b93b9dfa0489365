import { readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobView } from "../../src/protocol/schemas.js";
import { removeDir, taskForm, tempDir } from "../helpers/gateway.js";
import { HeygemEmulator } from "../helpers/heygem-emulator.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { CLI, killAll, run, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";
import { python, requirePython } from "../helpers/python.js";
import { until } from "../helpers/until.js";
import { sha256 } from "../worker/harness.js";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;
/** Quick timers for the agent, so that the test does not wait on production defaults. */
const FAST_HEYGEM = [
  "--heygem-poll-interval",
  "50",
  "--heygem-probe-interval",
  "200",
  "--heygem-busy-backoff",
  "50",
];

interface TaskJson {
  task_id: string;
  status: string;
  error_message: string | null;
  error_kind: string | null;
}

/**
 * `multi-heygem worker --engine heygem` and `multi-heygem gateway` as real processes, in front of
 * two HeyGem emulators (two containers of one GPU machine) running in the test process.
 */
describe("a HeyGem machine end to end", () => {
  let dir: string;
  let audio: string;
  let video: string;
  const emulators: HeygemEmulator[] = [];

  beforeEach(async () => {
    dir = await tempDir();
    audio = join(dir, "speech.wav");
    video = join(dir, "person.mp4");
    await makeAudio(audio, { seconds: 2 });
    await makeVideo(video, { seconds: 3, width: 160, height: 120 });
    for (let i = 0; i < 2; i++)
      emulators.push(await HeygemEmulator.start({ stepDelayMs: 30, render: "mux" }));
  });

  afterEach(async () => {
    await killAll();
    for (const emu of emulators.splice(0)) await emu.close();
    await removeDir(dir);
  });

  it.skipIf(python === undefined)(
    "gateway → worker → HeyGem containers: the seed's sync client gets the MP4",
    async () => {
      const [a, b] = emulators as [HeygemEmulator, HeygemEmulator];
      const worker = await startWorkerProcess([
        "--data-dir",
        join(dir, "worker-data"),
        "--engine",
        "heygem",
        "--heygem",
        a.flag,
        "--heygem",
        b.flag,
        ...FAST_HEYGEM,
      ]);
      const health = (await (await fetch(`${worker.url}/v1/health`)).json()) as {
        max_concurrent: number;
        instances: { name: string; reachable: boolean }[];
      };
      expect(health.max_concurrent).toBe(2);
      expect(health.instances.map((i) => i.name)).toEqual([new URL(a.url).host, new URL(b.url).host]);

      const machines = join(dir, "machines.json");
      await writeFile(
        machines,
        JSON.stringify({
          machines: [
            { name: "gpu-box", host: "127.0.0.1", port: Number(new URL(worker.url).port), max_concurrent: 2 },
          ],
        }),
      );
      const gateway = await startGatewayProcess([
        "--data-dir",
        join(dir, "gateway-data"),
        "--config",
        machines,
        "--health-interval",
        "100",
      ]);

      const out = join(dir, "out.mp4");
      const res = await run(requirePython(), [join(EXAMPLES, "sync_client.py"), audio, video, out], {
        env: { MULTI_HEYGEM_URL: gateway.url },
      });
      expect(res.code, res.stderr).toBe(0);
      const media = await probe(out);
      expect(media.video).toMatchObject({ width: 160, height: 120 });
      expect(media.audio).toBeDefined();
      expect(Math.abs(media.durationSec - 2)).toBeLessThan(0.3);
      expect(a.submits.length + b.submits.length).toBe(1);

      // Several faces: the task fails for good, in HeyGem's words, as the input's fault.
      a.failNext("存在多人脸");
      b.failNext("存在多人脸");
      const created = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({ audio: { path: audio }, video: { path: video } }),
      });
      const { task_id } = (await created.json()) as TaskJson;
      const failed = await until(async () => {
        const task = (await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as TaskJson;
        return task.status === "failed" && task;
      }, 30_000);
      expect(failed.error_kind).toBe("input");
      expect(failed.error_message).toContain("存在多人脸");
    },
  );

  it("a worker killed mid-job finds the task again by its code after its restart (worker.json)", async () => {
    // Steps only when told, so the job is surely mid-way when the agent dies.
    const emu = await HeygemEmulator.start({ render: "mux" });
    emulators.push(emu);
    const config = join(dir, "worker.json");
    await writeFile(
      config,
      JSON.stringify({
        engine: "heygem",
        data_dir: "worker-data",
        heygem: { instances: [{ name: "gpu0", url: emu.url, data_dir: emu.dir }], poll_interval_ms: 50 },
      }),
    );
    let worker = await startWorkerProcess(["--config", config]);
    const call = (path: string, init?: RequestInit) => fetch(`${worker.url}${path}`, init);
    const upload = async (path: string) => {
      const content = await readFile(path);
      const hash = sha256(content);
      const res = await call(`/v1/blobs/${hash}`, {
        method: "PUT",
        body: content,
        headers: { "content-type": "application/octet-stream" },
      });
      expect(res.status).toBe(201);
      return { sha256: hash, bytes: content.length, name: basename(path) };
    };
    const body = { audio: await upload(audio), video: await upload(video), audio_duration: 2 };
    await call("/v1/jobs/j1", {
      method: "PUT",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    const job = async () => (await (await call("/v1/jobs/j1")).json()) as JobView;
    await until(async () => (await job()).status === "running");
    await emu.advance();
    await until(async () => (await job()).progress === 5);

    await worker.kill();
    await emu.advance();
    worker = await startWorkerProcess(["--config", config]);
    expect(worker.lines.some((l) => l.includes(join(dir, "worker-data")))).toBe(true);
    await until(async () => (await job()).progress === 20);
    await emu.finish();
    const done = await until(async () => {
      const view = await job();
      return view.status === "succeeded" && view;
    });
    const out = join(dir, "resumed.mp4");
    await writeFile(out, Buffer.from(await (await call("/v1/jobs/j1/result")).arrayBuffer()));
    expect(done.result?.sha256).toBe(sha256(await readFile(out)));
    expect((await probe(out)).audio).toBeDefined();
    expect(emu.submits).toHaveLength(1);
  });

  it("a heygem worker without instances does not start, and says what to write", async () => {
    const res = await run(process.execPath, [CLI, "worker", "--port", "0", "--engine", "heygem"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("--heygem http://127.0.0.1:8383=");
  });
});
