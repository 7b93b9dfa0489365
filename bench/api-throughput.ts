import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { startGateway, startSimWorker } from "./fleet.js";
import { type Child, freePort, until } from "./harness.js";
import { getJson, postTask, type TaskJson } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { round } from "./stats.js";

/**
 * Issue 5, figure 5: how much of Fastify's speed the gateway keeps on its hottest read, and how
 * fast it takes new tasks. Both servers are child processes started the same way (same Node,
 * no flags); autocannon drives them from the benchmark process with the same settings.
 */

const BARE = fileURLToPath(new URL("./bare-fastify.js", import.meta.url));
const CONNECTIONS = 10;

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
  title: "API throughput",
  async run(ctx: BenchContext): Promise<Measured> {
    const seconds = ctx.quick ? 2 : 6;
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

    return {
      figures: [
        figure(
          "api.get-task-ratio",
          "API: GET /tasks/{id} req/s ÷ bare Fastify req/s",
          round(gateway.requestsPerSec / bare.requestsPerSec, 3),
          "×",
          { op: ">=", value: 0.5 },
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
      ],
      method: [
        "GET: a gateway child process (machines file with one instant simulate worker, default flags, so it logs " +
          "every request at info as deployed) holding one completed task; autocannon GETs /tasks/{id}. The yardstick " +
          "is a child process running a bare Fastify app (no logger, no schema) whose one route answers the same " +
          "JSON. The ratio compares the two; a second gateway run with `--log-level warn` shows what request logging costs.",
        `autocannon runs in the benchmark process (${CONNECTIONS} connections, no pipelining), so on a small box ` +
          "client and server share the cores; both targets are measured under the same condition.",
      ],
      raw: { cannons },
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
