import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GatewayFlags, resolveGatewayConfig } from "../../src/config/gateway-config.js";
import type { Engine } from "../../src/engines/engine.js";
import { type GatewayHandle, type GatewayOptions, startGateway } from "../../src/gateway/server.js";
import { createLogger, type Logger } from "../../src/logger.js";
import { startWorker, type WorkerHandle } from "../../src/worker/agent.js";

/** Flags that make a test gateway quick to notice things; tests may override any. */
export const FAST_FLAGS: GatewayFlags = {
  host: "127.0.0.1",
  port: "0",
  healthInterval: "100",
  pollWait: "5000",
  requestTimeout: "5000",
  machineGrace: "1000",
  callbackRetry: "50",
};

export async function tempDir(prefix = "mh-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * `MULTI_HEYGEM_TEST_STORE=postgres` runs every test gateway that names no `--store` on a
 * PostgreSQL database of its own (one per data dir, so a restart finds its tasks again), to run
 * the gateway's suites against the second store by hand; databases are dropped by the next run.
 */
const TEST_STORE = process.env.MULTI_HEYGEM_TEST_STORE;
const databasesByDir = new Map<string, Promise<string>>();

async function storeFor(dir: string): Promise<string> {
  let url = databasesByDir.get(dir);
  if (!url) {
    const { createTestDatabase } = await import("./postgres.js");
    url = createTestDatabase().then((db) => db.url);
    databasesByDir.set(dir, url);
  }
  return url;
}

/** An in-process gateway on a loopback port with its own data dir (embedded worker unless told). */
export async function startTestGateway(
  flags: GatewayFlags = {},
  dataDir?: string,
  options: GatewayOptions & { logger?: Logger } = {},
): Promise<GatewayHandle & { dataDir: string }> {
  const dir = dataDir ?? (await tempDir());
  const store = TEST_STORE === "postgres" && flags.store === undefined ? { store: await storeFor(dir) } : {};
  const config = resolveGatewayConfig(
    { ...FAST_FLAGS, embedded: flags.config === undefined, dataDir: dir, ...store, ...flags },
    dir,
  );
  const handle = await startGateway(
    config,
    options.logger ?? createLogger({ level: process.env.TEST_LOG_LEVEL ?? "silent", format: "json" }),
    options,
  );
  return Object.assign(handle, { dataDir: dir });
}

/** Every regular file under `dir`, relative, sorted: to prove a request left nothing behind. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .filter((p) => !p.endsWith(".db") && !p.endsWith(".db-wal") && !p.endsWith(".db-shm"))
    .sort();
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A multipart form from files on disk, as a client would send it. */
export async function taskForm(
  fields: Record<string, string | { path: string; name?: string }>,
): Promise<FormData> {
  const { openAsBlob } = await import("node:fs");
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value === "string") form.append(key, value);
    else form.append(key, await openAsBlob(value.path), value.name ?? value.path.split("/").pop() ?? key);
  }
  return form;
}

/** A worker agent in this process, on a loopback port, in front of `engine` (a GateEngine, say). */
export async function startLocalWorker(dataDir: string, engine: Engine): Promise<WorkerHandle> {
  return startWorker({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    engine,
    logger: createLogger({ level: "silent", format: "json" }),
  });
}
