import { statfs } from "node:fs/promises";
import type { Kysely } from "kysely";
import { errorMessage } from "../errors.js";
import { probeWritable } from "../store/ops-queries.js";
import type { Database } from "../store/schema.js";
import type { Clock } from "./clock.js";
import type { Fleet } from "./fleet.js";

export interface ReadinessOptions {
  readonly db: Kysely<Database>;
  readonly clock: Clock;
  readonly fleet: Fleet;
  readonly dataDir: string;
  /**
   * `--min-free-disk`: below it uploads are refused (507), so the gateway is not ready either;
   * uploads and results land in the data dir, and a full disk fails every task.
   */
  readonly minFreeDiskBytes: number;
  /** The embedded worker runs in this process: tasks can run even with no remote machine up. */
  readonly embedded: boolean;
  /** False once the gateway is stopping (SIGTERM): a load balancer should send uploads elsewhere. */
  readonly accepting: boolean;
}

export interface Readiness {
  readonly ready: boolean;
  /** The checks that failed, by name, for the log and the 503 body's message. */
  readonly failing: string[];
  readonly checks: {
    readonly store: { ok: boolean; error?: string };
    readonly disk: { ok: boolean; free_bytes: number; floor_bytes: number; error?: string };
    readonly machines: { ok: boolean; up: number; total: number; embedded: boolean };
    readonly accepting: { ok: boolean; error?: string };
  };
}

/** Whether the gateway can take and run tasks now (`GET /readyz`), each check with its figures. */
export async function checkReadiness(o: ReadinessOptions): Promise<Readiness> {
  const [store, disk] = await Promise.all([storeCheck(o), diskCheck(o)]);
  // Up and taking work: a draining or disabled machine will run no new task.
  const { up, total } = o.fleet.availability();
  const fleet = { ok: up > 0 || o.embedded, up, total, embedded: o.embedded };
  const accepting = o.accepting
    ? { ok: true }
    : { ok: false, error: "the gateway is stopping and takes no new task" };
  const checks = { store, disk, machines: fleet, accepting };
  const failing = Object.entries(checks)
    .filter(([, check]) => !check.ok)
    .map(([name]) => name);
  return { ready: failing.length === 0, failing, checks };
}

async function storeCheck(o: ReadinessOptions): Promise<Readiness["checks"]["store"]> {
  try {
    await probeWritable(o.db, new Date(o.clock.now()).toISOString());
    return { ok: true };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

async function diskCheck(o: ReadinessOptions): Promise<Readiness["checks"]["disk"]> {
  try {
    const fs = await statfs(o.dataDir);
    const free = fs.bavail * fs.bsize;
    return { ok: free >= o.minFreeDiskBytes, free_bytes: free, floor_bytes: o.minFreeDiskBytes };
  } catch (err) {
    return { ok: false, free_bytes: 0, floor_bytes: o.minFreeDiskBytes, error: errorMessage(err) };
  }
}
