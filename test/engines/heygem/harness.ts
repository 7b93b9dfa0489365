import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeygemEngine } from "../../../src/engines/heygem/heygem-engine.js";
import type { HeygemInstanceConfig, HeygemSettings } from "../../../src/engines/heygem/heygem-settings.js";
import type { Health, JobView, PutJobBody } from "../../../src/protocol/schemas.js";
import { startWorker, type WorkerHandle } from "../../../src/worker/agent.js";
import { type EmulatorOptions, HeygemEmulator } from "../../helpers/heygem-emulator.js";
import { until } from "../../helpers/until.js";
import { sha256, silentLogger } from "../../worker/harness.js";

/** Quick timers, so that failures show within a test; each test overrides what it is about. */
export const FAST: Omit<HeygemSettings, "instances"> = {
  pollIntervalMs: 20,
  stallTimeoutMs: 60_000,
  timeoutBaseMs: 600_000,
  timeoutPerAudioSecondMs: 0,
  busyTimeoutMs: 60_000,
  busyBackoffMs: 20,
  requestTimeoutMs: 2_000,
  probeIntervalMs: 50,
  unreachableGraceMs: 60_000,
};

export interface HeygemWorker {
  readonly handle: WorkerHandle;
  readonly engine: HeygemEngine;
  readonly dataDir: string;
  putJob(id: string, body: PutJobBody): Promise<JobView>;
  job(id: string): Promise<JobView>;
  /** Waits until the job is in one of `statuses`, and returns it. */
  until(id: string, ...statuses: JobView["status"][]): Promise<JobView>;
  health(): Promise<Health>;
  instance(name: string): Promise<NonNullable<Health["instances"]>[number]>;
  result(id: string): Promise<Buffer>;
  /** Distinct small blobs (not media) unless real `media` is given. */
  uploadInputs(tag?: string, media?: { audio?: Buffer; video?: Buffer }): Promise<PutJobBody>;
  call(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

/** Emulators, engines and workers on loopback, each with its own temp dirs, all stopped by cleanup(). */
export function heygemHarness() {
  const cleanups: (() => Promise<void>)[] = [];

  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "mh-heygem-worker-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async function emulator(options: EmulatorOptions = {}): Promise<HeygemEmulator> {
    const emu = await HeygemEmulator.start(options);
    cleanups.push(() => emu.close());
    return emu;
  }

  function instanceOf(emu: HeygemEmulator, dataDir = emu.dir): HeygemInstanceConfig {
    return { name: `gpu-${new URL(emu.url).port}`, url: emu.url, dataDir };
  }

  async function worker(
    instances: readonly HeygemInstanceConfig[],
    options: { settings?: Partial<HeygemSettings>; dataDir?: string } = {},
  ): Promise<HeygemWorker> {
    const engine = new HeygemEngine({
      settings: { ...FAST, ...options.settings, instances },
      logger: silentLogger,
    });
    const dataDir = options.dataDir ?? (await tempDir());
    const handle = await startWorker({ host: "127.0.0.1", port: 0, logger: silentLogger, engine, dataDir });
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await handle.close();
      await engine.close();
    };
    cleanups.push(stop);
    const call = (path: string, init: RequestInit = {}) => fetch(`${handle.url}${path}`, init);
    const json = async <T>(path: string, init?: RequestInit): Promise<T> => {
      const res = await call(path, init);
      if (!res.ok) throw new Error(`${init?.method ?? "GET"} ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };
    const self: HeygemWorker = {
      handle,
      engine,
      dataDir,
      call,
      stop,
      putJob: (id, body) =>
        json<JobView>(`/v1/jobs/${id}`, {
          method: "PUT",
          body: JSON.stringify(body),
          headers: { "content-type": "application/json" },
        }),
      job: (id) => json<JobView>(`/v1/jobs/${id}`),
      until: (id, ...statuses) =>
        until(
          async () => {
            const view = await self.job(id);
            return statuses.includes(view.status) && view;
          },
          20_000,
          { what: `job ${id} ${statuses.join("/")}` },
        ),
      health: () => json<Health>("/v1/health"),
      async instance(name) {
        const found = (await self.health()).instances?.find((i) => i.name === name);
        if (!found) throw new Error(`no instance ${name} in /v1/health`);
        return found;
      },
      async result(id) {
        const res = await call(`/v1/jobs/${id}/result`);
        if (!res.ok) throw new Error(`result ${id}: ${res.status}`);
        return Buffer.from(await res.arrayBuffer());
      },
      async uploadInputs(tag = "x", media = {}) {
        const upload = async (content: Buffer) => {
          const hash = sha256(content);
          const res = await call(`/v1/blobs/${hash}`, {
            method: "PUT",
            body: content,
            headers: { "content-type": "application/octet-stream" },
          });
          if (res.status !== 200 && res.status !== 201) throw new Error(`upload: ${res.status}`);
          return { sha256: hash, bytes: content.length };
        };
        const a = await upload(media.audio ?? Buffer.from(`audio ${tag}`));
        const v = await upload(media.video ?? Buffer.from(`video ${tag}`));
        return { audio: { ...a, name: "speech.wav" }, video: { ...v, name: "person.mp4" } };
      },
    };
    return self;
  }

  async function cleanup(): Promise<void> {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  }

  return { tempDir, emulator, instanceOf, worker, cleanup };
}

/** Names left in a container's temp folder. */
export async function tempFiles(emu: HeygemEmulator): Promise<string[]> {
  return (await readdir(emu.tempDir)).sort();
}
