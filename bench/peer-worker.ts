import { closeSync, openSync, writeSync } from "node:fs";
import { Worker } from "bullmq";
import { run } from "graphile-worker";
import { Redis } from "ioredis";

/**
 * The worker side of a peer queue (bench/peers.ts), as its own process the way such workers are
 * deployed: `node peer-worker.js bullmq <redis-url> <queue> <prefix> <journal>` or
 * `node peer-worker.js graphile <postgres-url> <journal>`. One worker, concurrency 1, a no-op job;
 * every job's start and end go to the journal, `s|e <job id> <ms since the epoch>` a line, the
 * time to the microsecond (performance.timeOrigin + now(): the same wall clock as every process
 * on the machine). Both libraries keep their defaults otherwise.
 */

const now = () => performance.timeOrigin + performance.now();

function journal(path: string) {
  const fd = openSync(path, "a");
  return {
    // Synchronous and tiny: the line is written before the job's promise settles, as our worker's
    // journal line is written before its engine starts.
    write: (event: "s" | "e", id: string, at: number) => writeSync(fd, `${event} ${id} ${at.toFixed(3)}\n`),
    close: () => closeSync(fd),
  };
}

function ready(url: string): void {
  process.stdout.write(`${JSON.stringify({ msg: "peer worker ready", url })}\n`);
}

async function bullmq(redisUrl: string, queue: string, prefix: string, journalPath: string) {
  const out = journal(journalPath);
  const { hostname, port } = new URL(redisUrl);
  const worker = new Worker(
    queue,
    async (job) => {
      out.write("s", String(job.id), now());
      out.write("e", String(job.id), now());
    },
    {
      connection: new Redis({ host: hostname, port: Number(port), maxRetriesPerRequest: null }),
      prefix,
      concurrency: 1,
    },
  );
  worker.on("error", (err) => process.stderr.write(`bullmq worker: ${String(err)}\n`));
  await worker.waitUntilReady();
  ready(redisUrl);
}

async function graphile(connectionString: string, journalPath: string) {
  const out = journal(journalPath);
  await run({
    connectionString,
    concurrency: 1,
    noHandleSignals: true,
    taskList: {
      noop: async (_payload, helpers) => {
        out.write("s", helpers.job.id, now());
        out.write("e", helpers.job.id, now());
      },
    },
  });
  ready(connectionString);
}

const [kind, ...args] = process.argv.slice(2);
const started =
  kind === "bullmq" && args.length === 4
    ? bullmq(args[0] as string, args[1] as string, args[2] as string, args[3] as string)
    : kind === "graphile" && args.length === 2
      ? graphile(args[0] as string, args[1] as string)
      : Promise.reject(
          new Error(
            "usage: peer-worker bullmq <redis-url> <queue> <prefix> <journal> | graphile <pg-url> <journal>",
          ),
        );
started.catch((err: unknown) => {
  process.stderr.write(`peer worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
