import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlobStore } from "../../src/blobs/blob-store.js";
import { resolveGatewayConfig } from "../../src/config/gateway-config.js";
import { ConfigError, StartupError } from "../../src/errors.js";
import { type GatewayHandle, startGateway } from "../../src/gateway/server.js";
import { startCuttableProxy } from "../helpers/cuttable-proxy.js";
import { FAST_FLAGS, removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "../helpers/postgres.js";
import { until } from "../helpers/until.js";

describe("choosing the store", () => {
  it("takes --store, else DATABASE_URL, else SQLite; never repeats a URL that may hold a password", () => {
    const url = "postgres://mh:s3cret@db.example:5432/multi_heygem";
    expect(resolveGatewayConfig({}).storeUrl).toBeUndefined();
    expect(resolveGatewayConfig({ store: url }).storeUrl).toBe(url);
    expect(resolveGatewayConfig({}, "/", { DATABASE_URL: url }).storeUrl).toBe(url);
    expect(resolveGatewayConfig({}, "/", { DATABASE_URL: " " }).storeUrl).toBeUndefined();
    expect(
      resolveGatewayConfig({ store: "postgresql://other/db" }, "/", { DATABASE_URL: url }).storeUrl,
    ).toBe("postgresql://other/db");

    const refused = (run: () => unknown) => {
      try {
        run();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error("accepted");
    };
    const flag = refused(() => resolveGatewayConfig({ store: "mysql://mh:s3cret@db/x" }));
    expect(flag).toMatch(/^--store: the value is not a PostgreSQL URL such as postgres:\/\//);
    expect(flag).not.toContain("s3cret");
    const env = refused(() => resolveGatewayConfig({}, "/", { DATABASE_URL: "mysql://mh:s3cret@db/x" }));
    expect(env).toMatch(/^DATABASE_URL: the value is not a PostgreSQL URL/);
    expect(env).not.toContain("s3cret");
  });
});

describe.skipIf(!postgresAvailable)("a gateway on PostgreSQL (--store)", () => {
  let dir: string;
  let database: TestDatabase;
  const gateways: GatewayHandle[] = [];

  beforeEach(async () => {
    dir = await tempDir("mh-pg-gateway-");
    database = await createTestDatabase();
  });
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.close();
    await database.drop();
    await removeDir(dir);
  });

  const start = async (dataDir: string, store = database.url) => {
    const gateway = await startTestGateway({ store }, dataDir);
    gateways.push(gateway);
    return gateway;
  };

  it("turns a task into an MP4, keeps its rows in the database and its files in the data dir", async () => {
    const gateway = await start(join(dir, "data"));
    await makeAudio(join(dir, "speech.wav"), { seconds: 1.5 });
    await makeVideo(join(dir, "person.mp4"), { seconds: 1 });
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({
        audio: { path: join(dir, "speech.wav") },
        video: { path: join(dir, "person.mp4") },
        description: "on PostgreSQL",
      }),
    });
    expect(res.status).toBe(200);
    const { task_id } = (await res.json()) as { task_id: string };
    const done = await until(async () => {
      const task = (await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as { status: string };
      if (task.status === "failed") throw new Error(JSON.stringify(task));
      return task.status === "completed" && task;
    }, 60_000);
    expect(done).toMatchObject({ description: "on PostgreSQL" });
    const mp4 = join(dir, "out.mp4");
    await writeFile(
      mp4,
      Buffer.from(await (await fetch(`${gateway.url}/tasks/${task_id}/result`)).arrayBuffer()),
    );
    expect((await probe(mp4)).durationSec).toBeCloseTo(1.5, 1);

    const list = (await (await fetch(`${gateway.url}/tasks?status=completed`)).json()) as { total: number };
    expect(list.total).toBe(1);
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/multi_heygem_tasks\{status="completed"\} 1/);
    // No SQLite file beside the blobs: the rows are in PostgreSQL.
    expect((await gateway.store.db.selectFrom("tasks").select("id").execute()).map((t) => t.id)).toEqual([
      task_id,
    ]);
    await expect(stat(join(dir, "data", "multi-heygem.db"))).rejects.toThrow();
  });

  it("a database that goes away: /readyz says so without its address; back, the gateway takes tasks again", async () => {
    const url = new URL(database.url);
    const proxy = await startCuttableProxy(Number(url.port || 5432));
    try {
      url.port = String(proxy.port);
      const gateway = await start(join(dir, "data"), url.toString());
      expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);

      proxy.cut();
      const down = await until(async () => {
        const res = await fetch(`${gateway.url}/readyz`);
        return (
          res.status === 503 && ((await res.json()) as { checks: { store: { ok: boolean; error?: string } } })
        );
      }, 30_000);
      expect(down.checks.store.ok).toBe(false);
      expect(down.checks.store.error ?? "").not.toContain(String(proxy.port));
      expect(down.checks.store.error ?? "").not.toContain("127.0.0.1");
      // A change meanwhile is refused as the store's, not as a bug: 503, nothing stored.
      await makeAudio(join(dir, "early.wav"), { seconds: 1 });
      await makeVideo(join(dir, "person.mp4"), { seconds: 1 });
      const refused = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({
          audio: { path: join(dir, "early.wav") },
          video: { path: join(dir, "person.mp4") },
        }),
      });
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: string }).error).toBe("STORE_UNAVAILABLE");
      const early = createHash("sha256")
        .update(await readFile(join(dir, "early.wav")))
        .digest("hex");
      expect(await new BlobStore(join(dir, "data", "blobs")).has(early)).toBeUndefined();

      proxy.restore();
      await until(async () => (await fetch(`${gateway.url}/readyz`)).status === 200, 30_000);
      await makeAudio(join(dir, "speech.wav"), { seconds: 1 });
      const res = await fetch(`${gateway.url}/tasks`, {
        method: "POST",
        body: await taskForm({
          audio: { path: join(dir, "speech.wav") },
          video: { path: join(dir, "person.mp4") },
        }),
      });
      expect(res.status).toBe(200);
      const { task_id } = (await res.json()) as { task_id: string };
      await until(
        async () =>
          ((await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as { status: string }).status ===
          "completed",
        60_000,
      );
    } finally {
      await proxy.close();
    }
  });

  it("a database lost just as the gateway begins coordinating: it keeps running, and dispatches once it is back", async () => {
    const url = new URL(database.url);
    const proxy = await startCuttableProxy(Number(url.port || 5432));
    try {
      url.port = String(proxy.port);
      const data = join(dir, "data");
      // The connection goes the moment the gateway says it listens: before it follows the other
      // gateways' changes and runs for dispatcher (the chaos test's cut met a restart there).
      const logger = pino(
        { level: "info" },
        {
          write: (line: string) => {
            if (line.includes('"msg":"gateway listening"')) proxy.cut();
          },
        },
      );
      const config = resolveGatewayConfig(
        { ...FAST_FLAGS, embedded: true, dataDir: data, store: url.toString() },
        data,
      );
      const gateway = await startGateway(config, logger);
      gateways.push(gateway);
      expect((await fetch(`${gateway.url}/readyz`)).status).toBe(503);

      proxy.restore();
      await makeAudio(join(dir, "speech.wav"), { seconds: 1 });
      await makeVideo(join(dir, "person.mp4"), { seconds: 1 });
      const res = await until(async () => {
        const answer = await fetch(`${gateway.url}/tasks`, {
          method: "POST",
          body: await taskForm({
            audio: { path: join(dir, "speech.wav") },
            video: { path: join(dir, "person.mp4") },
          }),
        });
        return answer.status === 200 && answer;
      }, 30_000);
      const { task_id } = (await res.json()) as { task_id: string };
      await until(
        async () =>
          ((await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as { status: string }).status ===
          "completed",
        60_000,
      );
    } finally {
      await proxy.close();
    }
  });

  it("keeps a data dir's blobs to one store: a SQLite store's dir is refused, and so is a PostgreSQL one's without --store", async () => {
    const sqliteDir = join(dir, "sqlite-data");
    const sqlite = await startTestGateway({}, sqliteDir);
    await sqlite.close();
    const onSqlite = await startTestGateway({ store: database.url }, sqliteDir).catch((e: unknown) => e);
    expect(onSqlite).toBeInstanceOf(StartupError);
    expect((onSqlite as Error).message).toMatch(/holds a SQLite store \(multi-heygem\.db\)/);

    const pgDir = join(dir, "pg-data");
    const pg = await start(pgDir);
    await pg.close();
    gateways.splice(0);
    const withoutStore = await startTestGateway({}, pgDir).catch((e: unknown) => e);
    expect(withoutStore).toBeInstanceOf(StartupError);
    expect((withoutStore as Error).message).toMatch(
      new RegExp(
        `holds the blobs of a PostgreSQL store \\(postgres://.*/${database.name}\\): start the gateway with --store`,
      ),
    );
  });
});
