import { createHash } from "node:crypto";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine, EngineJob } from "../../src/engines/engine.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { writeMachines } from "../helpers/fleet.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

const TASKS = Number(process.env.RETENTION_TASKS ?? 1000);

/**
 * An engine that answers at once: its MP4 is one of 16 small files picked by the audio's content,
 * so many tasks share a result blob and the sweep must count references for results too.
 */
class InstantEngine implements Engine {
  readonly name = "instant";
  constructor(readonly capacity: number) {}
  async run(job: EngineJob): Promise<void> {
    const pick = createHash("sha256")
      .update(await readFile(job.audioPath))
      .digest("hex")
      .slice(0, 1);
    await writeFile(job.outputPath, `result ${pick}`.repeat(100));
  }
}

/** A distinct 0.2 s WAV per `i`: every task of the thousand uploads its own audio. */
function wav(i: number): Buffer {
  const rate = 8000;
  const samples = rate / 5;
  const data = Buffer.alloc(samples * 2);
  for (let n = 0; n < samples; n++) data.writeInt16LE(Math.round(8000 * Math.sin((n * (i + 1)) / 97)), n * 2);
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8);
  header.write("fmt ", 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

interface Footprint {
  /** Rows of every table of the store. */
  rows: Record<string, number>;
  /** Every file under the data dir but SQLite's own, with its size. */
  files: Record<string, number>;
  bytes: number;
  /** SQLite pages holding data: its file does not shrink without VACUUM, so pages are counted instead. */
  pagesInUse: number;
}

/**
 * Issue 10: "a test runs a thousand tasks with a short retention and proves the data dir returns
 * to its starting size (rows, files and bytes counted), with no live task's file touched". The
 * gateway's data dir is measured: its blobs and every table of its store. The workers' own input
 * caches and results live in their data dirs and are bounded by their own settings.
 */
describe("a thousand tasks under a short retention", () => {
  let dir: string;
  let gateway: Gateway;
  let gate: GateEngine;
  const workers: WorkerHandle[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    gate = new GateEngine(2);
    const held = await startLocalWorker(join(dir, "worker-gate"), gate);
    const instant = await startLocalWorker(join(dir, "worker-instant"), new InstantEngine(8));
    workers.push(held, instant);
    const machines = join(dir, "machines.json");
    await writeMachines(machines, [
      { name: "gate", port: held.port, max_concurrent: 2 },
      { name: "instant", port: instant.port, max_concurrent: 8 },
    ]);
    gateway = await startTestGateway(
      { config: machines, retention: "1s", retentionRows: "2s" },
      join(dir, "gateway"),
    );
  });
  afterAll(async () => {
    await gateway?.close();
    for (const worker of workers) await worker.close();
    await removeDir(dir);
  });

  const post = async (audio: Buffer, video: Buffer): Promise<string> => {
    const form = new FormData();
    form.append("audio", new Blob([audio]), "speech.wav");
    form.append("video", new Blob([video]), "template.mp4");
    const res = await fetch(`${gateway.url}/tasks`, { method: "POST", body: form });
    if (res.status !== 200) throw new Error(`POST /tasks answered ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { task_id: string }).task_id;
  };

  async function footprint(): Promise<Footprint> {
    const { db } = gateway.store;
    const tables = await sql<{ name: string }>`select name from sqlite_master
      where type = 'table' and name not like 'sqlite_%' and name not like 'kysely_%'`.execute(db);
    const rows: Record<string, number> = {};
    for (const { name } of tables.rows) {
      const { rows: n } = await sql<{ n: number }>`select count(*) as n from ${sql.table(name)}`.execute(db);
      rows[name] = Number(n[0]?.n);
    }
    const files: Record<string, number> = {};
    let bytes = 0;
    const root = gateway.dataDir;
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || /\.db(-wal|-shm)?$/.test(entry.name)) continue;
      const path = join(entry.parentPath, entry.name);
      const size = (await stat(path)).size;
      files[path.slice(root.length + 1)] = size;
      bytes += size;
    }
    const pages = await sql<{ n: number }>`select
      (select page_count from pragma_page_count()) - (select freelist_count from pragma_freelist_count()) as n`.execute(
      db,
    );
    return { rows, files, bytes, pagesInUse: Number(pages.rows[0]?.n) };
  }

  it("returns the data dir to its starting size, and never touches a live task's file", {
    timeout: 900_000,
  }, async () => {
    const video = await readFile(await makeTemplate(dir));
    const templateSha = createHash("sha256").update(video).digest("hex");

    // Two live tasks held on the gate machine: one with its own audio, one sharing the audio of
    // the first of the thousand; both share the template with all of them.
    expect((await fetch(`${gateway.url}/machines/instant/drain`, { method: "POST" })).status).toBe(200);
    const live = [await post(wav(-7), video), await post(wav(0), video)];
    await until(() => gate.running.length === 2, 30_000, { what: "live tasks on the gate machine" });
    expect((await fetch(`${gateway.url}/machines/instant/resume`, { method: "POST" })).status).toBe(200);
    const liveFiles = new Map<string, Buffer>();
    for (const id of live) {
      const row = await gateway.store.getTask(id);
      if (!row) throw new Error("live task missing");
      for (const sha of [row.audio_sha256, row.video_sha256]) {
        liveFiles.set(sha, await readFile(join(gateway.dataDir, "blobs", sha.slice(0, 2), sha)));
      }
    }
    expect(liveFiles.has(templateSha)).toBe(true);

    const before = await footprint();

    // Watch the live tasks' files the whole time: none may be missing or differ for an instant.
    let watching = true;
    const damage: string[] = [];
    const watch = (async () => {
      while (watching) {
        for (const [sha, content] of liveFiles) {
          const now = await readFile(join(gateway.dataDir, "blobs", sha.slice(0, 2), sha)).catch(
            () => undefined,
          );
          if (!now?.equals(content)) damage.push(`${sha} ${now ? "changed" : "missing"}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < TASKS) {
          const i = next++;
          ids.push(await post(wav(i), video));
        }
      }),
    );
    expect(ids).toHaveLength(TASKS);

    // Every one of the thousand ran and was swept: files after 1 s, records after 2 s.
    await until(
      async () => {
        const now = await footprint();
        return (
          JSON.stringify(now.rows) === JSON.stringify(before.rows) &&
          JSON.stringify(now.files) === JSON.stringify(before.files)
        );
      },
      600_000,
      { what: "data dir back to its starting size", intervalMs: 200 },
    ).catch(async (err) => {
      process.stderr.write(`BEFORE ${JSON.stringify(before)}\nNOW ${JSON.stringify(await footprint())}\n`);
      throw err;
    });
    watching = false;
    await watch;

    const after = await footprint();
    expect(after.rows).toEqual(before.rows);
    expect(after.files).toEqual(before.files);
    expect(after.bytes).toBe(before.bytes);
    // Freed pages stay in SQLite's file for reuse; those holding data are back where they were,
    // give or take the b-trees' shape (a few pages).
    expect(after.pagesInUse).toBeLessThanOrEqual(before.pagesInUse + 8);

    expect(damage).toEqual([]);
    for (const id of live) expect((await gateway.store.getTask(id))?.status).toBe("processing");
    for (const id of ids.slice(0, 5)) expect((await fetch(`${gateway.url}/tasks/${id}`)).status).toBe(404);

    // The live tasks still finish, from the inputs kept for them.
    for (const id of gate.running) gate.release(id);
    for (const id of live) {
      await until(async () => (await gateway.store.getTask(id))?.status === "completed", 30_000);
      expect((await fetch(`${gateway.url}/tasks/${id}/result`)).status).toBe(200);
    }

    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`multi_heygem_task_files_expired_total ${TASKS}\\b`));
    expect(metrics).toMatch(
      new RegExp(`multi_heygem_tasks_deleted_total\\{reason="retention"\\} ${TASKS}\\b`),
    );
  });
});

async function makeTemplate(dir: string): Promise<string> {
  const path = join(dir, "template.mp4");
  await makeVideo(path, { seconds: 1 });
  return path;
}
