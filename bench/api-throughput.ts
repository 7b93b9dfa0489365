import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { startGateway, startSimWorker } from "./fleet.js";
import { type Child, freePort, mapLimit, until } from "./harness.js";
import { getJson, postTask, type TaskJson } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { percentile, round } from "./stats.js";

/**
 * Issue 5, figure 5: how much of Fastify's speed the gateway keeps on its hottest read, and how
 * fast it takes new tasks. Both servers are child processes started the same way (same Node,
 * no flags); autocannon drives them from the benchmark process with the same settings.
 */

const BARE = fileURLToPath(new URL("./bare-fastify.js", import.meta.url));
const CONNECTIONS = 10;
const POST_CLIENTS = 4;

interface Cannon {
  target: string;
  requestsPerSec: number;
  total: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export const apiThroughput: Benchmark = {
  name: "api",
  title: "5. API throughput",
  async run(ctx: BenchContext): Promise<Measured> {
    const seconds = ctx.quick ? 5 : 10;
    const posts = ctx.quick ? 50 : 200;
    const audio = await ctx.media.wav(0.5);
    const video = await ctx.media.video(1, "160x120");
    const dir = await ctx.scope.tempDir("mh-bench-api-");
    const worker = await startSimWorker(ctx.scope, dir, {
      name: "gpu-1",
      capacity: 1,
      speedFactor: 1,
      timeScale: 0,
    });
    const machines = [{ name: "gpu-1", port: worker.port, max_concurrent: 1 }];

    const cannons: Cannon[] = [];
    let body = "";
    for (const logLevel of ["info", "warn"]) {
      // At warn the gateway does not log "gateway listening": it gets a port and is polled there.
      const port = logLevel === "info" ? undefined : await freePort();
      const gateway = await startGateway(
        ctx.scope,
        dir,
        machines,
        ["--log-level", logLevel],
        `gateway-${logLevel}`,
        port,
      );
      const { task_id } = await postTask(gateway.url, audio, video);
      const url = `${gateway.url}/tasks/${task_id}`;
      const task = await until(
        "the task to complete",
        async () => {
          const t = await getJson<TaskJson>(url);
          return t.status === "completed" ? t : undefined;
        },
        30_000,
      );
      body = JSON.stringify(task);
      ctx.log(`GET /tasks/{id}, gateway --log-level ${logLevel}: ${seconds} s`);
      cannons.push(await cannon(`gateway (--log-level ${logLevel})`, url, seconds));
      await gateway.child.kill();
      if (logLevel === "info") {
        const bare = await startBare(ctx, body);
        ctx.log(`GET /tasks/{id}, bare Fastify: ${seconds} s`);
        cannons.push(await cannon("bare Fastify", `${bare.url}/tasks/${task_id}`, seconds));
        await bare.kill();
      }
    }
    await worker.child.kill();
    const [gateway, bare] = cannons as [Cannon, Cannon, Cannon];

    ctx.log(`POST /tasks: ${posts} small tasks, ${POST_CLIENTS} clients`);
    const creation = await createTasks(ctx, audio, video, posts);

    return {
      figures: [
        figure(
          "api.get-task-ratio",
          "API: GET /tasks/{id} req/s ÷ bare Fastify req/s",
          round(gateway.requestsPerSec / bare.requestsPerSec, 3),
          "×",
          { op: ">=", value: 0.5 },
        ),
        figure(
          "api.post-tasks-per-sec",
          "API: POST /tasks, small files",
          round(creation.perSec, 1),
          "tasks/s",
        ),
      ],
      tables: [
        {
          title: `autocannon, ${CONNECTIONS} connections, ${seconds} s each after a 1 s warm-up`,
          columns: ["target", "req/s", "requests", "p50 ms", "p99 ms", "errors", "non-2xx"],
          rows: cannons.map((c) => [
            c.target,
            round(c.requestsPerSec, 0),
            c.total,
            c.p50Ms,
            c.p99Ms,
            c.errors,
            c.non2xx,
          ]),
        },
        {
          title: `POST /tasks: ${posts} tasks, ${POST_CLIENTS} clients at a time`,
          columns: ["tasks/s", "p50 ms", "p99 ms", "audio", "video"],
          rows: [
            [
              round(creation.perSec, 1),
              round(creation.p50Ms, 1),
              round(creation.p99Ms, 1),
              "0.5 s 16 kHz WAV (16 kB)",
              "1 s 160x120 H.264 MP4",
            ],
          ],
        },
      ],
      method: [
        "GET: a gateway child process (machines file with one instant simulate worker, default flags, so it logs " +
          "every request at info as deployed) holding one completed task; autocannon GETs /tasks/{id}. The yardstick " +
          "is a child process running a bare Fastify app (no logger, no schema) whose one route answers the same " +
          "JSON. The ratio compares the two; a second gateway run with `--log-level warn` shows what request logging costs.",
        `autocannon runs in the benchmark process (${CONNECTIONS} connections, no pipelining), so on a small box ` +
          "client and server share the cores; both targets are measured under the same condition.",
        "POST: a fresh gateway child with no machines (tasks stay pending, so only creation is measured: multipart " +
          `upload, hashing, two ffprobe runs, SQLite insert); ${posts} tasks sent by ${POST_CLIENTS} concurrent ` +
          "clients; tasks/s = tasks ÷ wall time from the first request to the last answer.",
      ],
      raw: { cannons, creation },
    };
  },
};

async function startBare(ctx: BenchContext, body: string): Promise<Child> {
  return ctx.scope.startNode("bare-fastify", BARE, [body], { readyMessage: "bare fastify listening" });
}

async function cannon(target: string, url: string, seconds: number): Promise<Cannon> {
  await autocannon({ url, connections: CONNECTIONS, duration: 1 });
  const r = await autocannon({ url, connections: CONNECTIONS, duration: seconds });
  return {
    target,
    requestsPerSec: r.requests.average,
    total: r.requests.total,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

async function createTasks(ctx: BenchContext, audio: string, video: string, count: number) {
  const dir = await ctx.scope.tempDir("mh-bench-post-");
  const gateway = await startGateway(ctx.scope, dir, [], [], "gateway-post");
  try {
    await postTask(gateway.url, audio, video); // warm-up: first ffprobe, SQLite pages
    const latencies: number[] = [];
    const t0 = performance.now();
    await mapLimit(Array.from({ length: count }), POST_CLIENTS, async () => {
      const p0 = performance.now();
      await postTask(gateway.url, audio, video);
      latencies.push(performance.now() - p0);
    });
    const seconds = (performance.now() - t0) / 1000;
    return {
      perSec: count / seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      seconds,
    };
  } finally {
    await gateway.child.kill();
  }
}
