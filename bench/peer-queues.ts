import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Queue } from "bullmq";
import { Logger, makeWorkerUtils, type WorkerUtils } from "graphile-worker";
import { Redis } from "ioredis";
import { type Child, type Scope, until } from "./harness.js";
import { type BenchDatabase, createBenchDatabase } from "./postgres.js";

/**
 * The two queues our dispatch is set beside (issue 14): BullMQ on the machine's Redis and
 * graphile-worker on its PostgreSQL, each with a no-op job run by one worker of concurrency 1 in a
 * child process of its own (bench/peer-worker.ts). This side is the producer: it adds jobs and
 * reads the worker's journal back.
 */

/** One job as its system ran it; times in ms since the epoch, on the machine's one clock. */
export interface JobRun {
  /** The store's write of the job began (the producer's add, or our task row's created_at). */
  readonly added: number;
  /** The worker started it (our worker's journal `started`; a peer's handler entered). */
  readonly started: number;
  /** The worker let it go (our journal `finished`; a peer's handler returned). */
  readonly ended: number;
  /** The system is done with it: ours once its result is home (completed_at); a peer's at `ended`. */
  readonly done: number;
  /** Ours only: when the gateway recorded the attempt (task started_at), before the worker's PUT. */
  readonly dispatched?: number;
  /** Ours only: the client's clock just before it sent POST /tasks (upload and probe to come). */
  readonly sent?: number;
}

/** A queue under test: the same three calls for BullMQ, graphile-worker and ours. */
export interface QueueSubject {
  readonly label: string;
  /** One job; resolves with its id once the add call has returned. */
  add(): Promise<string>;
  /** `n` jobs that become visible to the worker at once. */
  backlog(n: number): Promise<string[]>;
  /** Resolves once the system is done with every job added so far: the worker idle, nothing in flight. */
  idle(): Promise<void>;
  /** Waits until every job of `ids` has ended, then says how each ran. */
  runs(ids: readonly string[]): Promise<JobRun[]>;
  close(): Promise<void>;
}

export const REDIS_URL = "redis://127.0.0.1:6379";

const PEER_WORKER = fileURLToPath(new URL("./peer-worker.js", import.meta.url));
const JOB = "noop";
const now = () => performance.timeOrigin + performance.now();

/** A peer worker's journal: `s|e <id> <ms>` lines. */
async function readPeerJournal(path: string): Promise<Map<string, { s?: number; e?: number }>> {
  const byId = new Map<string, { s?: number; e?: number }>();
  const text = await readFile(path, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [event, id, at] = line.split(" ");
    if ((event !== "s" && event !== "e") || id === undefined || at === undefined) continue;
    const entry = byId.get(id) ?? {};
    entry[event] = Number(at);
    byId.set(id, entry);
  }
  return byId;
}

/** Resolves once the child's journal has an end line for each of `count` jobs. */
async function peerIdle(journalPath: string, count: () => number): Promise<void> {
  await until(
    "the worker to end every job",
    async () => {
      const text = await readFile(journalPath, "utf8").catch(() => "");
      const ends = text.split("\n").filter((line) => line.startsWith("e ")).length;
      return ends >= count() ? true : undefined;
    },
    60_000,
    2,
  );
}

/** The runs of `ids` from the child's journal, once all have ended; `added` is the producer's clock. */
async function peerRuns(
  journalPath: string,
  ids: readonly string[],
  added: ReadonlyMap<string, number>,
): Promise<JobRun[]> {
  const journal = await until(
    `${ids.length} jobs to end`,
    async () => {
      const j = await readPeerJournal(journalPath);
      return ids.every((id) => j.get(id)?.e !== undefined) ? j : undefined;
    },
    120_000,
    20,
  );
  return ids.map((id) => {
    const entry = journal.get(id);
    const start = entry?.s;
    const end = entry?.e;
    const at = added.get(id);
    if (start === undefined || end === undefined || at === undefined) throw new Error(`job ${id}: no run`);
    return { added: at, started: start, ended: end, done: end };
  });
}

/** Whether the machine's Redis answers; the benchmark says how to start it when it does not. */
export async function redisAnswers(): Promise<boolean> {
  const { hostname, port } = new URL(REDIS_URL);
  const redis = new Redis({ host: hostname, port: Number(port), lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export async function startBullmq(scope: Scope, dir: string): Promise<QueueSubject> {
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const name = `peers-${tag}`;
  // Every key of the run under one prefix of its own, all deleted at the end.
  const prefix = `mh-bench-${tag}`;
  const journalPath = join(dir, "bullmq-journal.txt");
  const { hostname, port } = new URL(REDIS_URL);
  // BullMQ 6 takes its Redis driver from the caller (ioredis is an optional peer of it).
  const redis = new Redis({ host: hostname, port: Number(port), maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection: redis, prefix });
  const removeAll = async () => {
    try {
      await queue.obliterate({ force: true });
      // Whatever obliterate leaves (the worker's markers, metrics keys) goes too.
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    } finally {
      await queue.close();
      redis.disconnect();
    }
  };
  let child: Child;
  try {
    await queue.waitUntilReady();
    child = await scope.startNode(
      "bullmq-worker",
      PEER_WORKER,
      ["bullmq", REDIS_URL, name, prefix, journalPath],
      {
        readyMessage: "peer worker ready",
      },
    );
  } catch (err) {
    await removeAll().catch(() => undefined);
    throw err;
  }
  const added = new Map<string, number>();
  return {
    label: "BullMQ",
    async add() {
      // job.timestamp is the same instant (Date.now() as the add is built), to the millisecond only.
      const at = now();
      const job = await queue.add(JOB, {});
      added.set(String(job.id), at);
      return String(job.id);
    },
    async backlog(n) {
      const at = now();
      const jobs = await queue.addBulk(Array.from({ length: n }, () => ({ name: JOB, data: {} })));
      const ids = jobs.map((j) => String(j.id));
      for (const id of ids) added.set(id, at);
      return ids;
    },
    idle: () => peerIdle(journalPath, () => added.size),
    runs: (ids) => peerRuns(journalPath, ids, added),
    async close() {
      await child.kill();
      await removeAll();
    },
  };
}

const quiet = new Logger(() => () => undefined);

export async function startGraphile(scope: Scope, dir: string): Promise<QueueSubject> {
  const db: BenchDatabase = await createBenchDatabase();
  let utils: WorkerUtils | undefined;
  try {
    utils = await makeWorkerUtils({ connectionString: db.url, logger: quiet });
    // Its schema in place before the worker starts, so no run includes the migration.
    await utils.migrate();
    const journalPath = join(dir, "graphile-journal.txt");
    const child = await scope.startNode("graphile-worker", PEER_WORKER, ["graphile", db.url, journalPath], {
      readyMessage: "peer worker ready",
    });
    const added = new Map<string, number>();
    const producer = utils;
    return {
      label: "graphile-worker",
      async add() {
        const at = now();
        const job = await producer.addJob(JOB, {});
        added.set(job.id, at);
        return job.id;
      },
      async backlog(n) {
        const at = now();
        // One statement: all of them commit, and wake the worker, together.
        const jobs = await producer.addJobs(
          Array.from({ length: n }, () => ({ identifier: JOB, payload: {} })),
        );
        const ids = jobs.map((j) => j.id);
        for (const id of ids) added.set(id, at);
        return ids;
      },
      idle: () => peerIdle(journalPath, () => added.size),
      runs: (ids) => peerRuns(journalPath, ids, added),
      async close() {
        await child.kill();
        await producer.release();
        await db.drop();
      },
    };
  } catch (err) {
    await Promise.resolve(utils?.release()).catch(() => undefined);
    await db.drop().catch(() => undefined);
    throw err;
  }
}
