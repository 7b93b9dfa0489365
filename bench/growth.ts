import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { request } from "undici";
import { refillLatencies } from "./dispatch-latency.js";
import { readJournal, type SimWorker, startSimWorker } from "./fleet.js";
import { seedPostgres } from "./growth-postgres.js";
import { type Seeded, type SeedMedia, type SeedPlan, seedBlob, seedStore } from "./growth-store.js";
import { type Child, mapLimit, memoryOf, until } from "./harness.js";
import { allEnded, getJson, postEmpty, postTask, type TaskJson } from "./http.js";
import { writeWav } from "./intake.js";
import { lineChart } from "./plot.js";
import { createBenchDatabase, postgresAnswers } from "./postgres.js";
import { processCpu } from "./process-cpu.js";
import { type BenchContext, type Benchmark, type Figure, figure, type Measured } from "./report.js";
import { mb, mean, median, percentile, round } from "./stats.js";

/**
 * Issue 14, "Growth": what the gateway costs as the work grows. Dispatch latency with 0, 10k and
 * 100k tasks waiting behind the ones measured; a page of GET /tasks?status=… and the start-up
 * with a million task rows; the memory a queue of 100k tasks takes; the CPU one task costs. The
 * stores are seeded straight into SQLite (growth-store.ts) while no gateway runs, then a gateway
 * child process is started on them.
 */

const MACHINE = "gpu-1";
/** 1 s of audio × this = a 5 ms simulated job (as in dispatch-latency.ts). */
const TIME_SCALE = 0.005;
/** What the task behind the measured ones says its audio lasts: at TIME_SCALE, 500 s of work. */
const BLOCKER_SECONDS = 100_000;
const TASK_PAGE_STATUSES = ["completed", "failed", "cancelled", "pending", "processing"] as const;
/** Iterations of the reference loop (referenceLoopMs): ~0.1 s of CPU on an idle modern core. */
const REFERENCE_LOOP = 100_000_000;
/** How long the CPU run watches the gateway with no task, for its idle cost. */
const IDLE_MS = 3_000;
const GC_PRELOAD = fileURLToPath(new URL("./gc-on-signal.js", import.meta.url));

interface Sizes {
  readonly depths: readonly number[];
  /** The same on PostgreSQL (REPORT figures). */
  readonly pgDepths: readonly number[];
  /** Tasks dispatched (and timed) at each depth. */
  readonly measured: number;
  readonly rows: number;
  /** Of `rows`, waiting. */
  readonly rowsPending: number;
  readonly pageRequests: number;
  readonly starts: number;
  readonly cpuTasks: number;
}

const FULL: Sizes = {
  depths: [0, 10_000, 100_000],
  pgDepths: [0, 100_000],
  measured: 100,
  rows: 1_000_000,
  rowsPending: 10_000,
  pageRequests: 100,
  starts: 2,
  cpuTasks: 200,
};
const QUICK: Sizes = {
  depths: [0, 10_000],
  pgDepths: [10_000],
  measured: 20,
  rows: 100_000,
  rowsPending: 1_000,
  pageRequests: 30,
  starts: 1,
  cpuTasks: 40,
};

/** Node's memory after two full collections (gc-on-signal.ts), and the kernel's VmRSS then. */
interface Memory {
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
}

interface Start {
  rows: number;
  listeningMs: number;
  readyMs: number;
}

interface DepthRun {
  depth: number;
  rows: number;
  seed: Seeded;
  start: Start;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  tasksPerSec: number;
  /** Tasks still pending once the measured ones were done (the blocker runs). */
  pendingAfter: number;
  /** SQLite runs only. */
  memory?: Memory;
  latenciesMs: number[];
}

interface PageTiming {
  what: string;
  rows: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export const growth: Benchmark = {
  name: "growth",
  title: "Growth: cost as the work grows",
  async run(ctx: BenchContext): Promise<Measured> {
    const sizes = ctx.quick ? QUICK : FULL;
    const media = await seedMedia(ctx);

    const depthRuns: DepthRun[] = [];
    for (const depth of sizes.depths) {
      ctx.log(`dispatch: ${sizes.measured} tasks with ${depth} more waiting behind them`);
      depthRuns.push(await runDepth(ctx, sizes, depth, sqlite(media), true));
    }
    const pgRuns: DepthRun[] = [];
    if (await postgresAnswers()) {
      for (const depth of sizes.pgDepths) {
        ctx.log(`dispatch on PostgreSQL: ${sizes.measured} tasks with ${depth} more waiting behind them`);
        pgRuns.push(await runDepth(ctx, sizes, depth, postgres(media), false));
      }
    } else ctx.log("no PostgreSQL at 127.0.0.1:5432: its dispatch runs are left out");
    ctx.log(`store of ${sizes.rows} task rows: seeding`);
    const big = await runBigStore(ctx, sizes, media);
    ctx.log(`CPU per task: ${sizes.cpuTasks} tasks through the API`);
    const cpu = await runCpu(ctx, sizes.cpuTasks);

    const memories = depthRuns.map((r) => {
      if (!r.memory) throw new Error(`the run at depth ${r.depth} measured no memory`);
      return { pending: r.pendingAfter, ...r.memory };
    });
    const none = memories[0] as (typeof memories)[number];
    const deepest = memories.at(-1) as (typeof memories)[number];
    const perPending = (bytes: (m: Memory) => number) =>
      (bytes(deepest) - bytes(none)) / (deepest.pending - none.pending);
    const rssPerTask = perPending((m) => m.rssBytes);
    const heapPerTask = perPending((m) => m.heapUsedBytes + m.externalBytes);
    const worstPage = big.pages
      .filter((p) => p.what.startsWith("GET /tasks?status="))
      .reduce((a, b) => (b.p99Ms > a.p99Ms ? b : a));
    const bigStart = median(big.starts.map((s) => s.readyMs));
    const bigListening = median(big.starts.map((s) => s.listeningMs));
    const rowsText = sizes.rows.toLocaleString("en");

    const figures: Figure[] = [];
    for (const run of depthRuns) {
      const at = run.depth.toLocaleString("en");
      figures.push(
        figure(`growth.dispatch.p50.${run.depth}`, `Dispatch latency p50, ${at} pending`, run.p50Ms, "ms", {
          op: "<=",
          value: 5,
        }),
        figure(`growth.dispatch.p99.${run.depth}`, `Dispatch latency p99, ${at} pending`, run.p99Ms, "ms", {
          op: "<=",
          value: 20,
        }),
      );
    }
    for (const run of pgRuns) {
      const at = run.depth.toLocaleString("en");
      figures.push(
        figure(
          `growth.pg.dispatch.p50.${run.depth}`,
          `PostgreSQL: dispatch latency p50, ${at} pending`,
          run.p50Ms,
          "ms",
        ),
        figure(
          `growth.pg.dispatch.p99.${run.depth}`,
          `PostgreSQL: dispatch latency p99, ${at} pending`,
          run.p99Ms,
          "ms",
        ),
      );
    }
    figures.push(
      figure(
        "growth.tasks-page.p99",
        `GET /tasks?status=… page p99 with ${rowsText} rows (slowest status: ${worstPage.what.split("=")[1]})`,
        round(worstPage.p99Ms, 1),
        "ms",
        { op: "<=", value: 50 },
      ),
      figure(
        "growth.startup.listening",
        `Gateway start-up with ${rowsText} rows: spawn → listening (median of ${big.starts.length})`,
        round(bigListening / 1000, 2),
        "s",
        { op: "<=", value: 5 },
      ),
      figure(
        "growth.startup.ready",
        `Gateway start-up with ${rowsText} rows: spawn → /readyz 200 (median of ${big.starts.length})`,
        round(bigStart / 1000, 2),
        "s",
        { op: "<=", value: 5 },
      ),
      figure(
        "growth.memory.heap-per-pending",
        `Gateway memory per pending task: JS heap used + external after GC, ${deepest.pending.toLocaleString("en")} vs ${none.pending} pending`,
        round(heapPerTask, 1),
        "B",
        // Less than the smallest thing a process could keep per task (an id string alone is ~50 B).
        { op: "<=", value: 10 },
      ),
      figure(
        "growth.memory.rss-per-pending",
        "… the same from VmRSS after GC (holds SQLite's page cache, up to 16 MB)",
        round(rssPerTask, 1),
        "B",
      ),
      figure(
        "growth.cpu-per-task",
        "Gateway CPU per task (user+sys ÷ tasks; new small audio, reused video)",
        round(cpu.ownMsPerTask, 2),
        "ms",
        { op: "<=", value: 10 },
      ),
      figure(
        "growth.cpu-per-task.net",
        "… the same, less what the gateway spends idle over as long",
        round(cpu.netMsPerTask, 2),
        "ms",
      ),
      figure(
        "growth.cpu-per-task.children",
        "… and of the gateway's child processes (ffprobe) per task",
        round(cpu.childrenMsPerTask, 2),
        "ms",
      ),
    );

    const startPoints = [...depthRuns.map((r) => r.start), ...big.starts];
    return {
      figures,
      tables: [
        {
          title: `Dispatch latency by queue depth (${sizes.measured} tasks timed at each; slot freed → next job started)`,
          columns: [
            "store",
            "pending behind",
            "samples",
            "p50 ms",
            "p99 ms",
            "mean ms",
            "max ms",
            "tasks/s",
            "start: listening ms",
            "start: ready ms",
          ],
          rows: [
            ...depthRuns.map((r) => ["SQLite", r] as const),
            ...pgRuns.map((r) => ["PostgreSQL", r] as const),
          ].map(([store, r]) => [
            store,
            r.depth,
            r.samples,
            r.p50Ms,
            r.p99Ms,
            round(r.meanMs, 2),
            r.maxMs,
            round(r.tasksPerSec, 1),
            r.start.listeningMs,
            r.start.readyMs,
          ]),
        },
        {
          title: "Gateway memory after a full GC, after the same requests",
          columns: ["pending", "VmRSS MB", "heap used MB", "external MB", "array buffers MB"],
          rows: memories.map((m) => [
            m.pending,
            mb(m.rssBytes),
            mb(m.heapUsedBytes),
            mb(m.externalBytes),
            mb(m.arrayBuffersBytes),
          ]),
        },
        {
          title: `Reads with ${rowsText} task rows (${sizes.pageRequests} sequential requests each, default page of 50)`,
          columns: ["request", "rows matching", "p50 ms", "p99 ms", "max ms"],
          rows: big.pages.map((p) => [
            p.what,
            p.rows,
            round(p.p50Ms, 1),
            round(p.p99Ms, 1),
            round(p.maxMs, 1),
          ]),
        },
        {
          title:
            "Gateway start-up by store size (spawn → 'gateway listening' logged; → first GET /readyz 200)",
          columns: ["task rows", "listening ms", "ready ms"],
          rows: startPoints.map((s) => [s.rows, s.listeningMs, s.readyMs]),
        },
        {
          title: "Seeded stores",
          columns: ["store", "tasks", "events", "attempts", "size MB", "seeding s"],
          rows: [
            ...depthRuns.map((r) => [`SQLite, queue of ${r.depth + sizes.measured + 1}`, r.seed] as const),
            ...pgRuns.map((r) => [`PostgreSQL, queue of ${r.depth + sizes.measured + 1}`, r.seed] as const),
            [`SQLite, ${rowsText} rows`, big.seed] as const,
          ].map(([name, s]) => [name, s.tasks, s.events, s.attempts, mb(s.bytes), round(s.seconds, 1)]),
        },
        {
          title: "CPU per task",
          columns: [
            "tasks",
            "wall s",
            "tasks/s",
            "gateway CPU ms",
            "per task ms",
            "idle CPU ms/s",
            "per task, less idle, ms",
            "of which intake ms",
            "of which the run ms",
            "children CPU ms",
            "reference loop CPU ms",
          ],
          rows: [
            [
              cpu.tasks,
              round(cpu.seconds, 1),
              round(cpu.tasks / cpu.seconds, 1),
              cpu.ownMs,
              round(cpu.ownMsPerTask, 2),
              round(cpu.idleMsPerSec, 1),
              round(cpu.netMsPerTask, 2),
              round(cpu.intakeMsPerTask, 2),
              round(cpu.runMsPerTask, 2),
              cpu.childrenMs,
              round(cpu.referenceLoopMs),
            ],
          ],
        },
      ],
      plots: [
        {
          file: "growth-dispatch.svg",
          title: "Dispatch latency by queue depth",
          svg: lineChart({
            title: "Dispatch latency vs tasks pending",
            xLabel: "tasks pending behind the measured ones (0 drawn at 1)",
            yLabel: "ms",
            logX: true,
            series: [
              { name: "p50", points: depthRuns.map((r) => [r.depth, r.p50Ms]) },
              { name: "p99", points: depthRuns.map((r) => [r.depth, r.p99Ms]) },
              { name: "max", points: depthRuns.map((r) => [r.depth, r.maxMs]) },
              ...(pgRuns.length === 0
                ? []
                : [
                    { name: "p50 PostgreSQL", points: pgRuns.map((r) => [r.depth, r.p50Ms] as const) },
                    { name: "p99 PostgreSQL", points: pgRuns.map((r) => [r.depth, r.p99Ms] as const) },
                  ]),
            ],
          }),
        },
        {
          file: "growth-startup.svg",
          title: "Gateway start-up by store size",
          svg: lineChart({
            title: "Gateway start-up vs task rows",
            xLabel: "task rows in the store",
            yLabel: "ms from spawn",
            logX: true,
            series: [
              { name: "listening", points: startPoints.map((s) => [s.rows, s.listeningMs]) },
              { name: "/readyz 200", points: startPoints.map((s) => [s.rows, s.readyMs]) },
            ],
          }),
        },
        {
          file: "growth-memory.svg",
          title: "Gateway memory by queue depth",
          svg: lineChart({
            title: "Gateway memory after GC vs tasks pending",
            xLabel: "tasks pending (0 drawn at 1)",
            yLabel: "MB",
            logX: true,
            series: [
              { name: "VmRSS", points: memories.map((m) => [m.pending, mb(m.rssBytes)]) },
              {
                name: "heap + external",
                points: memories.map((m) => [m.pending, mb(m.heapUsedBytes + m.externalBytes)]),
              },
            ],
          }),
        },
      ],
      method: [
        "Every store is a gateway's SQLite file made by the product's own migrations, then filled in one " +
          "transaction of INSERT … SELECT over a recursive count (bench/growth-store.ts) while no gateway runs: " +
          "task rows with every column a real one has, one attempt per task that ran, and the events TaskStore " +
          "writes (created, queued, dispatched, and the final one). All tasks share one real 1 s audio, one " +
          "160x120 template video and one result file, put in the data dir's blob store. Finished tasks are " +
          "spread over 29 days (of each 200: 4 failed, 1 cancelled), those older than 7 days with their files " +
          "released as the retention sweep leaves them; pending tasks over the last 50 minutes.",
        `Dispatch latency: a queue of ${sizes.measured} tasks, then one blocker (its row says ` +
          `${BLOCKER_SECONDS} s of audio), then 0, ${sizes.depths.slice(1).join(" or ")} more, all priority 0; ` +
          `one simulate worker of capacity 1 (time scale ${TIME_SCALE}: a 1 s audio sleeps 5 ms), one gateway ` +
          "(`--health-interval 200`), both child processes on 127.0.0.1. Latency is read as in section 2 from the " +
          "worker's journal.jsonl: each finish paired with the next start (ms resolution); the last pair is the " +
          "blocker's start, which then holds the slot, so at least `depth` tasks wait throughout.",
        "PostgreSQL (REPORT figures): the same runs with `--store` on a database of their own on the machine's " +
          "server (127.0.0.1:5432, default settings), seeded by INSERT … SELECT over generate_series " +
          "(bench/growth-postgres.ts), then ANALYZE (as autovacuum would after such an insert); the blobs in the " +
          "gateway's data dir.",
        "Memory: once the measured tasks are done (the blocker runs, the rest wait), the same requests are sent " +
          "to each of these gateways (50 rounds of GET /tasks?limit=20, /tasks?status=pending&limit=20, " +
          "/tasks/{blocker}, /machines, /metrics, /readyz); then the gateway, started with a preload that does " +
          "nothing else (bench/gc-on-signal.ts), runs two full GCs on SIGUSR2 and reports process.memoryUsage(); " +
          "VmRSS is read from /proc right after. Per pending task = (deepest − none) ÷ the difference in pending tasks. " +
          "The target is on what the gateway's own code holds (heap + external): a per-task structure would show " +
          "there at ≥ 50 B a task. VmRSS also holds SQLite's page cache, which fills with the store's pages up to " +
          "better-sqlite3's default cache_size of 16 MB whatever the queue, and varies by several MB between two " +
          "gateway processes doing the same thing, so its per-task figure is reported, not judged.",
        `${rowsText} rows: ${sizes.rowsPending.toLocaleString("en")} of them pending (a blocker first, so ` +
          "one task runs and the rest wait, as in a busy fleet). Start-up: the gateway is started " +
          `${sizes.starts} times on it (kill -9 in between, so later starts re-attach to the running attempt); ` +
          "listening = the time of its 'gateway listening' log line − the spawn; ready = the first GET /readyz " +
          "200 (polled every 5 ms; needs the machine's first health probe). Then each read is sent " +
          `${sizes.pageRequests} times in a row by one client (undici, keep-alive), timed to the last byte.`,
        `CPU per task: a fresh gateway (defaults) and a simulate worker of capacity 2 at time scale 0 (no wait; ` +
          "it still remuxes the result with ffmpeg, in its own process). After 5 warm-up tasks, " +
          `${sizes.cpuTasks} tasks, each with its own 0.5 s WAV and the same 1 s video, are sent by 4 ` +
          "concurrent clients and run to completion; the gateway's utime+stime from /proc/PID/stat " +
          "(10 ms ticks) before and after, ÷ tasks. 'Less idle' takes off what the same gateway used over " +
          `${IDLE_MS / 1000} s with no task (health probes every second, timers), pro rata of the run's wall time. ` +
          "Intake = the tasks taken while the machine drains (POST /machines/gpu-1/drain: upload, hashing, media " +
          "check, insert); the run = from the resume until every task has ended (dispatch, input upload to the " +
          "worker, following the job, fetching and storing the result). Children = cutime+cstime (media probes " +
          "the gateway ran). The reference loop is a fixed " +
          `${REFERENCE_LOOP / 1e6}M-iteration loop timed in the bench process just before: the CPU time a fixed ` +
          "amount of work costs on this box at that moment (more when its cores are shared).",
        "The machine has 2 cores shared with whatever else runs; the depth runs' p99 is the 2nd-worst of " +
          `${sizes.measured} samples, so one stall shows.`,
      ],
      raw: { sizes, depthRuns, pgRuns, big, cpu, rssPerTask, heapPerTask },
    };
  },
};

async function seedMedia(ctx: BenchContext): Promise<SeedMedia> {
  const [audio, video, result] = await Promise.all([
    ctx.media.audio(1),
    ctx.media.video(1, "160x120"),
    ctx.media.video(1),
  ]);
  return {
    audio: { ...(await seedBlob(audio, "speech.m4a")), duration: 1 },
    video: await seedBlob(video, "avatar.mp4"),
    result: await seedBlob(result, "result.mp4"),
  };
}

interface Gateway {
  child: Child;
  url: string;
  start: Start;
}

/**
 * A gateway child on `dataDir` with `worker` as its one machine, timed from the spawn to its
 * "gateway listening" line and to its first GET /readyz 200.
 */
async function startGateway(
  ctx: BenchContext,
  dir: string,
  dataDir: string,
  worker: SimWorker,
  rows: number,
  options: { env?: NodeJS.ProcessEnv; flags?: readonly string[] } = {},
): Promise<Gateway> {
  const config = join(dir, "machines.json");
  const machine = { name: MACHINE, host: "127.0.0.1", port: worker.port, max_concurrent: 1, enabled: true };
  await writeFile(config, JSON.stringify({ machines: [machine] }));
  const args = [
    "--config",
    config,
    "--data-dir",
    dataDir,
    "--health-interval",
    "200",
    "--max-pending",
    "10000000",
    ...(options.flags ?? []),
  ];
  const spawnedAt = Date.now();
  const child = await ctx.scope.startGateway("gateway", args, undefined, options.env ?? {});
  const readyAt = await until(
    "GET /readyz 200",
    async () => ((await statusOf(`${child.url}/readyz`)) === 200 ? Date.now() : undefined),
    30_000,
    5,
  );
  const listeningAt = await loggedAt(child, "gateway listening");
  return {
    child,
    url: child.url,
    start: { rows, listeningMs: listeningAt - spawnedAt, readyMs: readyAt - spawnedAt },
  };
}

/** Where a depth run's gateway keeps its store. */
interface Backend {
  readonly name: "sqlite" | "postgres";
  /** The store seeded with `plan` for a gateway on `dataDir`, and the flags that point it there. */
  prepare(
    dataDir: string,
    plan: SeedPlan,
  ): Promise<{ seed: Seeded; flags: string[]; close(): Promise<void> }>;
}

function sqlite(media: SeedMedia): Backend {
  return {
    name: "sqlite",
    prepare: async (dataDir, plan) => ({
      seed: await seedStore(dataDir, plan, media),
      flags: [],
      close: async () => {},
    }),
  };
}

function postgres(media: SeedMedia): Backend {
  return {
    name: "postgres",
    async prepare(dataDir, plan) {
      const database = await createBenchDatabase();
      try {
        const seed = await seedPostgres(database.url, dataDir, plan, media);
        return { seed, flags: ["--store", database.url], close: () => database.drop() };
      } catch (err) {
        await database.drop();
        throw err;
      }
    },
  };
}

async function runDepth(
  ctx: BenchContext,
  sizes: Sizes,
  depth: number,
  backend: Backend,
  measureMemory: boolean,
): Promise<DepthRun> {
  const dir = await ctx.scope.tempDir(`mh-bench-growth-${backend.name}-${depth}-`);
  const dataDir = join(dir, "gateway");
  const plan: SeedPlan = {
    finished: 0,
    queue: [
      { count: sizes.measured, audioSeconds: 1 },
      { count: 1, audioSeconds: BLOCKER_SECONDS },
      { count: depth, audioSeconds: 1 },
    ],
  };
  const store = await backend.prepare(dataDir, plan);
  const { seed } = store;
  const worker = await startSimWorker(ctx.scope, dir, {
    name: MACHINE,
    capacity: 1,
    speedFactor: 1,
    timeScale: TIME_SCALE,
  });
  const memoryFile = join(dir, "memory.json");
  const t0 = performance.now();
  const gateway = await startGateway(ctx, dir, dataDir, worker, seed.tasks, {
    flags: store.flags,
    env: measureMemory
      ? { NODE_OPTIONS: `--import=${pathToFileURL(GC_PRELOAD).href}`, MH_BENCH_MEMORY_FILE: memoryFile }
      : {},
  }).catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  try {
    await until(
      `${sizes.measured} tasks completed`,
      async () => ((await total(gateway.url, "completed")) >= sizes.measured ? true : undefined),
      sizes.measured * 1_000 + 60_000,
      100,
    );
    const seconds = (performance.now() - t0) / 1000;
    const journal = await readJournal(worker);
    if (!journal) throw new Error(`the worker wrote no ${worker.dataDir}/journal.jsonl`);
    const latencies = refillLatencies(journal);
    const blocker = await until(
      "the blocker running",
      async () =>
        (await getJson<{ tasks: TaskJson[] }>(`${gateway.url}/tasks?status=processing&limit=1`)).tasks[0],
      10_000,
    );
    const memory = measureMemory
      ? await memoryAfterRequests(gateway, blocker.task_id, memoryFile)
      : undefined;
    return {
      depth,
      rows: seed.tasks,
      seed,
      start: gateway.start,
      samples: latencies.length,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      meanMs: mean(latencies),
      maxMs: Math.max(...latencies),
      tasksPerSec: sizes.measured / seconds,
      pendingAfter: await total(gateway.url, "pending"),
      ...(memory ? { memory } : {}),
      latenciesMs: latencies,
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
    await store.close();
  }
}

/** The same requests to every gateway compared, then its memory after two full GCs. */
async function memoryAfterRequests(gateway: Gateway, taskId: string, file: string): Promise<Memory> {
  const paths = [
    "/tasks?limit=20",
    "/tasks?status=pending&limit=20",
    `/tasks/${taskId}`,
    "/machines",
    "/metrics",
    "/readyz",
  ];
  for (let i = 0; i < 50; i++) for (const path of paths) await statusOf(`${gateway.url}${path}`);
  await rm(file, { force: true });
  process.kill(gateway.child.pid, "SIGUSR2");
  const usage = await until(
    "the gateway's memory report",
    async () => {
      const text = await readFile(file, "utf8").catch(() => undefined);
      try {
        return text === undefined ? undefined : (JSON.parse(text) as NodeJS.MemoryUsage);
      } catch {
        return undefined; // still being written
      }
    },
    10_000,
    20,
  );
  const proc = await memoryOf(gateway.child.pid);
  return {
    rssBytes: proc?.rssBytes ?? usage.rss,
    heapUsedBytes: usage.heapUsed,
    externalBytes: usage.external,
    arrayBuffersBytes: usage.arrayBuffers,
  };
}

async function runBigStore(ctx: BenchContext, sizes: Sizes, media: SeedMedia) {
  const dir = await ctx.scope.tempDir("mh-bench-growth-rows-");
  const dataDir = join(dir, "gateway");
  const seed = await seedStore(
    dataDir,
    {
      finished: sizes.rows - sizes.rowsPending,
      queue: [
        { count: 1, audioSeconds: BLOCKER_SECONDS },
        { count: sizes.rowsPending - 1, audioSeconds: 1 },
      ],
    },
    media,
  );
  ctx.log(
    `seeded ${seed.tasks} tasks, ${seed.events} events in ${round(seed.seconds, 1)} s (${mb(seed.bytes)} MB)`,
  );
  const worker = await startSimWorker(ctx.scope, dir, {
    name: MACHINE,
    capacity: 1,
    speedFactor: 1,
    timeScale: TIME_SCALE,
  });
  const starts: Start[] = [];
  let gateway: Gateway | undefined;
  try {
    for (let i = 0; i < sizes.starts; i++) {
      await gateway?.child.kill();
      gateway = await startGateway(ctx, dir, dataDir, worker, seed.tasks);
      starts.push(gateway.start);
    }
    const url = (gateway as Gateway).url;
    const counts = new Map<string, number>();
    for (const status of TASK_PAGE_STATUSES) counts.set(status, await total(url, status));
    const reads: Array<{ what: string; path: string; rows: number }> = [
      ...TASK_PAGE_STATUSES.map((status) => ({
        what: `GET /tasks?status=${status}`,
        path: `/tasks?status=${status}`,
        rows: counts.get(status) ?? 0,
      })),
      { what: "GET /tasks (all)", path: "/tasks", rows: seed.tasks },
      { what: "GET /machines", path: "/machines", rows: seed.attempts },
      { what: "GET /metrics", path: "/metrics", rows: seed.tasks },
    ];
    const pages: PageTiming[] = [];
    for (const read of reads) {
      const times = await timeRequests(`${url}${read.path}`, sizes.pageRequests);
      pages.push({
        what: read.what,
        rows: read.rows,
        p50Ms: percentile(times, 50),
        p99Ms: percentile(times, 99),
        maxMs: Math.max(...times),
      });
    }
    return { seed, starts, pages };
  } finally {
    await gateway?.child.kill();
    await worker.child.kill();
  }
}

/** `count` GETs of `url` one after the other, after 3 untimed ones; each timed to its last byte. */
async function timeRequests(url: string, count: number): Promise<number[]> {
  for (let i = 0; i < 3; i++) await statusOf(url);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const status = await statusOf(url);
    times.push(performance.now() - t0);
    if (status !== 200) throw new Error(`GET ${url} answered ${status}`);
  }
  return times;
}

async function runCpu(ctx: BenchContext, count: number) {
  const dir = await ctx.scope.tempDir("mh-bench-growth-cpu-");
  const warmUp = 5;
  const audios = await mapLimit(Array.from({ length: count + warmUp }), 8, (_, i) =>
    writeWav(join(dir, `speech-${i}.wav`), 0.5, i + 1),
  );
  const video = await ctx.media.video(1, "160x120");
  const worker = await startSimWorker(ctx.scope, dir, {
    name: MACHINE,
    capacity: 2,
    speedFactor: 1,
    timeScale: 0,
  });
  const config = join(dir, "machines.json");
  await writeFile(
    config,
    JSON.stringify({
      machines: [{ name: MACHINE, host: "127.0.0.1", port: worker.port, max_concurrent: 2, enabled: true }],
    }),
  );
  const child = await ctx.scope.startGateway("gateway-cpu", [
    "--config",
    config,
    "--data-dir",
    join(dir, "gateway"),
  ]);
  try {
    for (const audio of audios.slice(0, warmUp)) await postTask(child.url, audio, video);
    await until("the warm-up tasks to end", () => allEnded(child.url, warmUp), 60_000, 100);
    // What the gateway spends with no task at all (health probes, timers), over the same kind of
    // wait: the run's own cost is the rest.
    const idleFrom = await processCpu(child.pid);
    await sleep(IDLE_MS);
    const idleMsPerSec = ((await processCpu(child.pid)).ownMs - idleFrom.ownMs) / (IDLE_MS / 1000);
    const reference = referenceLoopMs();
    // Taken while the machine drains, then run: the two halves of a task's cost, apart.
    await postEmpty(`${child.url}/machines/${MACHINE}/drain`);
    const before = await processCpu(child.pid);
    const t0 = performance.now();
    await mapLimit(audios.slice(warmUp), 4, (audio) => postTask(child.url, audio, video));
    const taken = await processCpu(child.pid);
    const t1 = performance.now();
    await postEmpty(`${child.url}/machines/${MACHINE}/resume`);
    await until("every task to end", () => allEnded(child.url, warmUp + count), count * 1_000 + 60_000, 250);
    const t2 = performance.now();
    const after = await processCpu(child.pid);
    const seconds = (t2 - t0) / 1000;
    const ownMs = after.ownMs - before.ownMs;
    const childrenMs = after.childrenMs - before.childrenMs;
    const failed = await total(child.url, "failed");
    if (failed > 0) throw new Error(`${failed} of the CPU run's tasks failed`);
    const net = (ms: number, from: number, to: number) => (ms - (idleMsPerSec * (to - from)) / 1000) / count;
    return {
      tasks: count,
      seconds,
      ownMs,
      childrenMs,
      idleMsPerSec,
      referenceLoopMs: reference,
      ownMsPerTask: ownMs / count,
      netMsPerTask: net(ownMs, t0, t2),
      intakeMsPerTask: net(taken.ownMs - before.ownMs, t0, t1),
      runMsPerTask: net(after.ownMs - taken.ownMs, t1, t2),
      childrenMsPerTask: childrenMs / count,
    };
  } finally {
    await child.kill();
    await worker.child.kill();
  }
}

/**
 * CPU time of a fixed loop in this process: the same work costs more CPU time on a box whose
 * cores are shared (hyperthreads, a busy host), which is what a CPU-per-task figure is read against.
 */
function referenceLoopMs(): number {
  const from = process.cpuUsage();
  let x = 0;
  for (let i = 0; i < REFERENCE_LOOP; i++) x = (x + i * 7) % 1_000_003;
  const used = process.cpuUsage(from);
  if (x < 0) throw new Error("unreachable");
  return (used.user + used.system) / 1000;
}

async function total(url: string, status: string): Promise<number> {
  return (await getJson<{ total: number }>(`${url}/tasks?status=${status}&limit=1`)).total;
}

async function statusOf(url: string): Promise<number> {
  const res = await request(url).catch(() => undefined);
  if (!res) return 0;
  await res.body.arrayBuffer();
  return res.statusCode;
}

/** When the child logged `message` (pino's ISO `time`), in ms since the epoch. */
async function loggedAt(child: Child, message: string): Promise<number> {
  const text = await readFile(child.logPath, "utf8");
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    const parsed = JSON.parse(line) as { msg?: unknown; time?: unknown };
    if (parsed.msg === message && typeof parsed.time === "string") return Date.parse(parsed.time);
  }
  throw new Error(`${child.logPath}: no "${message}" line`);
}
