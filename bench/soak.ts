import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "../src/client/client.js";
import { npmPackagePath } from "../src/media/ffmpeg-binaries.js";
import { restartSimWorker, type SimWorker, startGateway, startSimWorker } from "./fleet.js";
import { GatewayGauges, type GatewayReading } from "./gateway-gauges.js";
import { cpuSecondsOf, freePort, until } from "./harness.js";
import { Inspector } from "./inspector.js";
import { stampedAudio } from "./media.js";
import { lineChart, slope } from "./plot.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { linearFit, round } from "./stats.js";
import { TaskLedger } from "./task-ledger.js";

/**
 * Issue 14, "Soak": thousands of tasks through a simulate fleet while a worker is killed and
 * restarted every minute, watching the gateway for what would end a long-lived service: resident
 * memory, open file descriptors and its SQLite files creeping up with the tasks done, and tasks
 * that fail when a lost machine's work should just move on.
 */

const WORKERS = 4;
const CAPACITY = 4;
/** Each task's audio: one second, so a job's simulated time is the time scale itself. */
const AUDIO_SEC = 1;
/**
 * Seconds a job sleeps. Short, so that the gateway, not the fleet, sets the pace; and the
 * simulate engine reports progress at every tenth of a job's time but no more often than every
 * 20 ms, so a short job costs a few progress round trips rather than ten.
 */
const JOB_SEC = 0.05;
/** Tasks submitted but not yet ended before the clients wait: a queue of a few per slot. */
const MAX_OUTSTANDING = WORKERS * CAPACITY * 4;
/** POSTs under way at once. */
const CLIENTS = 8;
/** A supervisor's restart delay after the kill. */
const RESTART_AFTER_MS = 2_000;
/** Samples before this share of the tasks completed are the warm-up, left out of the slopes. */
const WARM_SHARE = 0.2;

interface Plan {
  count: number;
  /** The clients' rate is count ÷ this. */
  submitSec: number;
  /** No task is submitted after this (the time budget), should the machine not keep up. */
  deadlineSec: number;
  killEverySec: number;
  sampleMs: number;
  /** How often the gateway is made to collect its garbage, and measured right after. */
  gcEverySec: number;
  /** --retention and --retention-rows, in seconds. */
  retentionSec: number;
}

const FULL: Plan = {
  count: 10_000,
  submitSec: 255,
  deadlineSec: 300,
  killEverySec: 60,
  sampleMs: 2_000,
  gcEverySec: 15,
  retentionSec: 20,
};
const QUICK: Plan = {
  count: 200,
  submitSec: 7,
  deadlineSec: 12,
  killEverySec: 5,
  sampleMs: 500,
  gcEverySec: 5,
  retentionSec: 3,
};

interface Sample extends GatewayReading {
  /** Seconds since the first POST. */
  t: number;
  submitted: number;
  completed: number;
  /** CPU seconds so far of the workers (ffmpeg and killed ones included) and of this process. */
  workersCpu: number;
  clientsCpu: number;
}

/** The gateway right after a full garbage collection. */
interface AfterGc {
  t: number;
  completed: number;
  rssMB: number;
  heapMB: number;
  /** How long the collection took, as the bench waited for it. */
  gcMs: number;
}

interface Kill {
  worker: string;
  killedSec: number;
  backSec: number;
  completedBefore: number;
}

export const soak: Benchmark = {
  name: "soak",
  title: "Soak: a worker killed every minute (issue 14)",
  async run(ctx: BenchContext): Promise<Measured> {
    const plan = ctx.quick ? QUICK : FULL;
    const rate = plan.count / plan.submitSec;
    const video = await ctx.media.video(2);
    const audio = await readFile(await ctx.media.stampableAudio(AUDIO_SEC));
    // The npm package's static builds start in a few ms where Debian's take ~60 ms of CPU: with
    // 10 000 remuxes on two shared cores, that is most of the run.
    const env = { FFMPEG_PATH: npmPackagePath("ffmpeg"), FFPROBE_PATH: npmPackagePath("ffprobe") };
    const dir = await ctx.scope.tempDir("mh-bench-soak-");
    const workers: SimWorker[] = [];
    for (let i = 1; i <= WORKERS; i++) {
      const spec = { name: `gpu-${i}`, capacity: CAPACITY, speedFactor: 1, timeScale: JOB_SEC / AUDIO_SEC };
      workers.push(await startSimWorker(ctx.scope, dir, spec, { env }));
    }
    const retention = `${plan.retentionSec}s`;
    const inspectPort = await freePort();
    const gateway = await startGateway(
      ctx.scope,
      dir,
      workers.map((w) => ({ name: w.spec.name, port: w.port, max_concurrent: CAPACITY })),
      ["--retention", retention, "--retention-rows", retention],
      "gateway",
      undefined,
      { ...env, NODE_OPTIONS: `--inspect=127.0.0.1:${inspectPort}` },
    );
    const pid = gateway.child.pid;
    const inspector = await Inspector.connect(inspectPort);
    const client = new Client({ url: gateway.url });
    const ledger = new TaskLedger(gateway.url);
    const gauges = new GatewayGauges(pid, gateway.url, gateway.dataDir);
    ctx.log(
      `${plan.count} tasks at ${round(rate, 1)}/s, a worker killed every ${plan.killEverySec} s; ` +
        `gateway pid ${pid}, retention ${retention}`,
    );

    const t0 = Date.now();
    const since = () => (Date.now() - t0) / 1000;
    let started = 0;
    let submitted = 0;
    const refused: string[] = [];
    let heldMs = 0;
    let submitting = true;
    /** Until every task ended (or the wait for it gave up). */
    let measuring = true;
    // What runs beside the clients; the first failure stops the run and is thrown at its end.
    const failures: unknown[] = [];
    const beside = (loop: () => Promise<void>) =>
      loop().catch((err: unknown) => {
        failures.push(err);
        submitting = false;
        measuring = false;
      });

    const samples: Sample[] = [];
    /** CPU seconds of the worker processes killed so far, read just before each kill. */
    let killedCpu = 0;
    const sampler = beside(async () => {
      while (measuring) {
        const [reading, workersCpu] = await Promise.all([
          gauges.read(),
          Promise.all(workers.map((w) => cpuSecondsOf(w.child.pid))),
        ]);
        const clients = process.cpuUsage();
        samples.push({
          ...reading,
          t: since(),
          submitted,
          completed: ledger.completed,
          workersCpu: killedCpu + workersCpu.reduce<number>((sum, c) => sum + (c ?? 0), 0),
          clientsCpu: (clients.user + clients.system) / 1e6,
        });
        await sleep(plan.sampleMs);
      }
    });

    // Memory right after a full collection: what the gateway keeps, whenever V8 would have
    // collected by itself (the samples above rise and fall by ~100 MB with its schedule).
    const afterGc: AfterGc[] = [];
    const collector = beside(async () => {
      for (let next = Date.now() + plan.gcEverySec * 1000; measuring; next += plan.gcEverySec * 1000) {
        while (measuring && Date.now() < next) await sleep(100);
        if (!measuring) return;
        const completed = ledger.completed;
        const gcStarted = performance.now();
        await inspector.collectGarbage();
        const gcMs = performance.now() - gcStarted;
        afterGc.push({ t: since(), completed, ...(await gauges.memory()), gcMs });
      }
    });

    const kills: Kill[] = [];
    const killer = beside(async () => {
      for (let k = 1; ; k++) {
        const at = t0 + k * plan.killEverySec * 1000;
        while (submitting && Date.now() < at) await sleep(100);
        if (!submitting) return;
        const i = (k - 1) % workers.length;
        const victim = workers[i] as SimWorker;
        const completedBefore = ledger.completed;
        killedCpu += (await cpuSecondsOf(victim.child.pid)) ?? 0;
        const killedSec = since();
        ctx.log(`kill -9 ${victim.spec.name} at ${round(killedSec, 1)} s (${completedBefore} tasks done)`);
        await victim.child.kill();
        await sleep(RESTART_AFTER_MS);
        workers[i] = await restartSimWorker(ctx.scope, dir, victim);
        kills.push({ worker: victim.spec.name, killedSec, backSec: since(), completedBefore });
      }
    });

    const posts = new Set<Promise<void>>();
    const deadline = t0 + plan.deadlineSec * 1000;
    for (let i = 0; i < plan.count && submitting; i++) {
      // The i-th task is due at i ÷ rate; a task held back past its time goes as soon as it may.
      const due = t0 + (i / rate) * 1000;
      if (due > Date.now()) await sleep(due - Date.now());
      const held = Date.now();
      while ((started - ledger.ended >= MAX_OUTSTANDING || posts.size >= CLIENTS) && Date.now() < deadline)
        await sleep(5);
      if (Date.now() >= deadline) break;
      heldMs += Date.now() - held;
      started++;
      const post = client
        .createTask({ audio: stampedAudio(audio, i), video, description: `soak ${i}` })
        .then(
          () => {
            submitted++;
          },
          (err: unknown) => {
            refused.push(err instanceof Error ? err.message : String(err));
            // It will never end: it must not count against the outstanding limit.
            started--;
          },
        )
        .finally(() => posts.delete(post));
      posts.add(post);
    }
    await Promise.all(posts);
    const submitEndSec = since();
    submitting = false;
    await killer;
    await until(
      "every task to end",
      async () => (ledger.ended >= submitted || !measuring ? true : undefined),
      60_000,
      100,
    ).catch(() => undefined);
    const runSec = since();
    measuring = false;
    await Promise.all([sampler, collector]);
    inspector.close();
    await ledger.close();
    const blobFiles = await gauges.blobFiles();
    gauges.close();
    if (failures.length > 0) throw failures[0];

    // --- Results ---------------------------------------------------------------------------
    const completed = ledger.completed;
    const warmFrom = WARM_SHARE * completed;
    const warm = samples.filter((s) => s.completed >= warmFrom);
    const warmGc = afterGc.filter((s) => s.completed >= warmFrom);
    const per1000 = <T extends { completed: number }>(from: readonly T[], pick: (s: T) => number) =>
      slope(from.map((s) => [s.completed / 1000, pick(s)]));
    const rssSlope = per1000(warm, (s) => s.rssMB);
    const rssGcSlope = per1000(warmGc, (s) => s.rssMB);
    const heapGcSlope = per1000(warmGc, (s) => s.heapMB);
    const fdSlope = per1000(warm, (s) => s.fds);
    const fileSlope = per1000(warm, (s) => s.dbMB + s.walMB);
    // Pages in use = a + b × task rows held + c × tasks done: c is what stays per task beyond the
    // rows retention has yet to delete (how many those are follows the pace, not a leak).
    const [, bytesPerRow = Number.NaN, keptPer1000 = Number.NaN] = linearFit(
      warm.map((s) => [s.taskRows, s.completed / 1000]),
      warm.map((s) => s.usedMB),
    );
    // What the store grew by before retention deleted anything: the scale of the above.
    const fillSlope = per1000(
      samples.filter((s) => s.t <= plan.retentionSec),
      (s) => s.usedMB,
    );
    // CPU milliseconds per task: the gateway's should not creep either.
    const cpuMs = (pick: (s: Sample) => number) => slope(warm.map((s) => [s.completed, pick(s) * 1000]));
    const cpu = {
      gateway: cpuMs((s) => s.cpuSec),
      workers: cpuMs((s) => s.workersCpu),
      clients: cpuMs((s) => s.clientsCpu),
    };

    const ends = [...ledger.ends.values()];
    const failed = ends.filter((o) => o.status !== "completed");
    const lost = submitted - ledger.ended;
    const attempts = ends.map((o) => o.attempts);
    const retried = attempts.filter((a) => a > 1).length;
    const maxAttempts = Math.max(0, ...attempts);
    const range = <T>(from: readonly T[], pick: (s: T) => number, digits = 1) => {
      const v = from.map(pick);
      return v.length === 0 ? "—" : `${round(Math.min(...v), digits)}–${round(Math.max(...v), digits)}`;
    };
    ctx.log(
      `${completed} completed in ${round(runSec, 1)} s; per 1000 tasks once warm: RSS after GC ` +
        `${round(rssGcSlope, 2)} MB (sampled ${round(rssSlope, 2)}), fds ${round(fdSlope, 2)}, SQLite kept ` +
        `${round(keptPer1000, 3)} MB (file ${round(fileSlope, 3)}); ${failed.length} failed, ${lost} lost, ${retried} retried`,
    );
    const perThousand = "MB per 1000 tasks";

    return {
      figures: [
        figure(
          "soak.rss_after_gc_slope",
          `Soak (${completed} tasks, a worker killed every ${plan.killEverySec} s): gateway RSS after a full GC, trend once warm`,
          round(rssGcSlope, 3),
          perThousand,
          { op: "<=", value: 1 },
        ),
        figure(
          "soak.rss_slope",
          `Soak: gateway RSS sampled every ${plan.sampleMs / 1000} s, trend once warm`,
          round(rssSlope, 3),
          perThousand,
        ),
        figure(
          "soak.heap_after_gc_slope",
          "Soak: gateway V8 heap after a full GC, trend once warm",
          round(heapGcSlope, 3),
          perThousand,
        ),
        figure(
          "soak.fd_slope",
          "Soak: gateway open file descriptors, trend once warm",
          round(fdSlope, 3),
          "fds per 1000 tasks",
          { op: "<=", value: 1 },
        ),
        figure(
          "soak.sqlite_kept",
          `Soak: SQLite pages in use beyond the task rows held (rows deleted ${retention} after a task ends)`,
          round(keptPer1000, 3),
          perThousand,
          { op: "<=", value: 0.1 },
        ),
        figure(
          "soak.sqlite_file_slope",
          "Soak: SQLite file (db + WAL), trend once warm",
          round(fileSlope, 3),
          perThousand,
        ),
        figure(
          "soak.failed",
          "Soak: tasks failed, lost or refused",
          failed.length + lost + refused.length,
          "tasks",
          { op: "<=", value: 0 },
        ),
        figure("soak.completed", "Soak: tasks completed", completed, "tasks", {
          op: ">=",
          value: plan.count,
        }),
        figure(
          "soak.throughput",
          "Soak: tasks completed per second",
          round(completed / runSec, 1),
          "tasks/s",
        ),
      ],
      tables: [
        {
          title: `The run (${WORKERS} workers × capacity ${CAPACITY}, ${JOB_SEC} s a job)`,
          columns: ["measure", "value"],
          rows: [
            ["tasks asked for, at", `${plan.count}, ${round(rate, 1)} tasks/s`],
            ["tasks submitted (none after the deadline)", `${submitted} (${plan.deadlineSec} s)`],
            ["last POST answered after", `${round(submitEndSec, 1)} s`],
            ["every task ended after", `${round(runSec, 1)} s`],
            ["clients held back by the outstanding limit", `${round(heldMs / 1000, 1)} s`],
            ["tasks completed", completed],
            ["tasks failed / cancelled", failed.length],
            ["tasks never ended (lost)", lost],
            ["POSTs refused", refused.length],
            ["tasks retried on another machine (attempts > 1)", retried],
            ["most attempts of one task (--max-attempts 3)", maxAttempts],
            ["event stream resets (events missed)", ledger.resets],
            [
              "samples, warm (after-GC probes, warm)",
              `${samples.length}, ${warm.length} (${afterGc.length}, ${warmGc.length})`,
            ],
            [
              "gateway RSS once warm, MB: sampled / after GC",
              `${range(warm, (s) => s.rssMB)} / ${range(warmGc, (s) => s.rssMB)}`,
            ],
            [
              "V8 heap once warm, MB: sampled / after GC",
              `${range(warm, (s) => s.heapMB)} / ${range(warmGc, (s) => s.heapMB)}`,
            ],
            ["open fds once warm", range(warm, (s) => s.fds, 0)],
            ["SQLite db + WAL once warm, MB", range(warm, (s) => s.dbMB + s.walMB, 2)],
            [
              "SQLite pages in use / free once warm, MB",
              `${range(warm, (s) => s.usedMB, 2)} / ${range(warm, (s) => s.freeMB, 2)}`,
            ],
            ["task rows in the store once warm", range(warm, (s) => s.taskRows, 0)],
            ["SQLite in use per task row held (fit)", `${round(bytesPerRow * 1000, 2)} kB`],
            ["SQLite in use grew before retention deleted anything", `${round(fillSlope, 2)} ${perThousand}`],
            ["blob files left at the end", blobFiles],
            [
              "CPU per task once warm: gateway / workers (ffmpeg included) / this process (clients)",
              `${round(cpu.gateway, 1)} / ${round(cpu.workers, 1)} / ${round(cpu.clients, 1)} ms`,
            ],
          ],
        },
        {
          title: "Workers killed (kill -9) and restarted",
          columns: ["worker", "killed at s", "listening again at s", "tasks done before"],
          rows: kills.map((k) => [k.worker, round(k.killedSec, 1), round(k.backSec, 1), k.completedBefore]),
        },
      ],
      plots: [
        {
          file: "soak-memory.svg",
          title: "Soak: gateway memory over tasks completed",
          svg: lineChart({
            title: "Gateway memory over the soak",
            xLabel: "tasks completed",
            yLabel: "MB",
            series: [
              { name: "RSS", points: samples.map((s) => [s.completed, round(s.rssMB, 1)]) },
              { name: "RSS after GC", points: afterGc.map((s) => [s.completed, round(s.rssMB, 1)]) },
              { name: "V8 heap after GC", points: afterGc.map((s) => [s.completed, round(s.heapMB, 1)]) },
            ],
          }),
        },
        {
          file: "soak-fds.svg",
          title: "Soak: gateway open file descriptors over tasks completed",
          svg: lineChart({
            title: "Gateway open file descriptors over the soak",
            xLabel: "tasks completed",
            yLabel: "open fds",
            series: [{ name: "fds", points: samples.map((s) => [s.completed, s.fds]) }],
          }),
        },
        {
          file: "soak-sqlite.svg",
          title: "Soak: the gateway's SQLite store over tasks completed",
          svg: lineChart({
            title: "SQLite store over the soak",
            xLabel: "tasks completed",
            yLabel: "MB",
            series: [
              {
                name: "db + WAL files",
                points: samples.map((s) => [s.completed, round(s.dbMB + s.walMB, 3)]),
              },
              { name: "pages in use", points: samples.map((s) => [s.completed, round(s.usedMB, 3)]) },
            ],
          }),
        },
      ],
      method: [
        `${WORKERS} \`multi-heygem worker --engine simulate\` child processes (capacity ${CAPACITY}, speed factor 1, ` +
          `time scale ${JOB_SEC}: a job sleeps ${JOB_SEC} s, then remuxes its result with ffmpeg) and one gateway ` +
          `(\`--retention ${retention} --retention-rows ${retention}\`, every other setting at its default, ` +
          "--max-attempts 3 among them); all get FFMPEG_PATH and FFPROBE_PATH naming the npm package's static " +
          "builds (a few ms a run, where Debian's costs ~60 ms of CPU).",
        `${plan.count} tasks asked for, each a ${AUDIO_SEC} s AAC file with the task's number in its comment tag ` +
          "(distinct bytes, so each is a new blob and media facts row for retention to delete) and the same 2 s " +
          `320x240 H.264 video, POSTed by ${CLIENTS} concurrent clients at a steady ${round(rate, 1)} tasks/s (the ` +
          `n-th not before n ÷ rate) but never more than ${MAX_OUTSTANDING} submitted and not yet ended, so that ` +
          "a slow patch (a kill, the shared machine's other load) does not build a deep queue: what the gateway " +
          `holds is a steady stream, not a backlog. None is submitted after ${plan.deadlineSec} s (the time ` +
          "budget), should the machine not keep up.",
        `Every ${plan.killEverySec} s while submitting, one worker in turn gets SIGKILL and is started again ` +
          `${RESTART_AFTER_MS / 1000} s later on the same port and data dir (as a supervisor would).`,
        "Each task's end is read from the gateway's event stream (GET /tasks/stream, one connection): status " +
          "and attempts of every task, since --retention-rows deletes its rows soon after.",
        `Every ${plan.sampleMs / 1000} s: the gateway's VmRSS (/proc/PID/status), its open fds (entries of ` +
          `/proc/PID/fd), the size of the SQLite file and its -wal, task rows and pages in use and free in the ` +
          "store (a read-only connection), V8 heap used (GET /metrics), CPU time of every process " +
          `(/proc/PID/stat), with the tasks completed so far. Every ${plan.gcEverySec} s the gateway (started with ` +
          "--inspect on 127.0.0.1) is made to run a full collection (DevTools protocol, " +
          "HeapProfiler.collectGarbage) and its RSS and heap are read right after.",
        `Slopes: least squares over tasks completed, per 1000 tasks, on what was measured after ` +
          `${WARM_SHARE * 100} % of the tasks completed (the warm-up: JIT, caches, pools, V8's heap finding its ` +
          `size, the first ${retention} before retention deletes anything).`,
        "Why after a full GC: sampled RSS rises and falls by ~100 MB as V8 lets garbage build up and collects " +
          "it, so its slope says when V8 collected more than what the gateway keeps; right after a full " +
          "collection only what is kept is left. SQLite: the file never shrinks (no VACUUM), so it is the " +
          "high-water mark of the rows held, which follow the pace (rate × retention); the figure fits pages in " +
          "use = a + b × task rows + c × tasks completed and reports c.",
        "Targets: RSS after GC ≤ 1 MB per 1000 tasks, i.e. under 1 kB kept per task, less than one task's " +
          "record; fds ≤ 1 per 1000 tasks: an fd kept per task or per upload would show as hundreds; SQLite ≤ " +
          "0.1 MB per 1000 tasks, under one small row per task; tasks failed, cancelled, lost or refused: 0, " +
          "since a killed worker's tasks must move to another machine.",
        "Noise: two cores shared with other work.",
      ],
      raw: {
        plan,
        rate,
        runSec,
        submitEndSec,
        heldMs,
        submitted,
        completed,
        failed,
        lost,
        refused,
        retried,
        maxAttempts,
        resets: ledger.resets,
        blobFiles,
        slopes: {
          rssGcSlope,
          rssSlope,
          heapGcSlope,
          fdSlope,
          fileSlope,
          keptPer1000,
          bytesPerRow,
          fillSlope,
        },
        cpuMsPerTask: cpu,
        kills,
        afterGc: afterGc.map((s) => ({
          ...s,
          t: round(s.t, 2),
          rssMB: round(s.rssMB, 2),
          heapMB: round(s.heapMB, 2),
        })),
        samples: samples.map((s) => ({
          ...s,
          t: round(s.t, 2),
          rssMB: round(s.rssMB, 2),
          heapMB: round(s.heapMB, 2),
          externalMB: round(s.externalMB, 2),
          dbMB: round(s.dbMB, 3),
          walMB: round(s.walMB, 3),
          usedMB: round(s.usedMB, 3),
          freeMB: round(s.freeMB, 3),
          cpuSec: round(s.cpuSec, 2),
          workersCpu: round(s.workersCpu, 2),
          clientsCpu: round(s.clientsCpu, 2),
        })),
      },
    };
  },
};
