import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { request } from "undici";
import { parseJournal, peakConcurrency } from "../src/worker/job-journal.js";
import { startCuttableProxy } from "../test/helpers/cuttable-proxy.js";
import { startCallbackReceiver } from "./callback-receiver.js";
import { freePorts, mapLimit, until } from "./harness.js";
import { multipartBody } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { Restartable } from "./restartable.js";
import { median, mulberry32, percentile, round } from "./stats.js";

/**
 * Issue 13, the long run of test/e2e/chaos.test.ts: three gateways on one PostgreSQL store and four
 * simulate workers, all child processes, take a thousand tasks through every gateway while a
 * gateway or a worker is killed with SIGKILL every few seconds and restarted, and one gateway's
 * database connection is cut, then silenced. Reported: whether anything was lost, run twice or
 * overbooked, and how long the dispatcher's takeovers took.
 */

type Range = readonly [number, number];

interface Settings {
  readonly tasks: number;
  /** Processes killed in all. */
  readonly kills: number;
  readonly everyMs: Range;
  readonly restartAfterMs: Range;
  /** After the chaos starts: the proxied gateway's database connection cut, later stalled. */
  readonly cutAtMs: number;
  readonly stallAtMs: number;
  readonly faultMs: number;
  /** Submissions are spread over at least this long. */
  readonly submitSpanMs: number;
}

const FULL: Settings = {
  tasks: 1000,
  kills: 30,
  everyMs: [2_000, 4_000],
  restartAfterMs: [500, 2_500],
  cutAtMs: 8_000,
  stallAtMs: 40_000,
  faultMs: 6_000,
  submitSpanMs: 40_000,
};
const QUICK: Settings = {
  tasks: 100,
  kills: 6,
  everyMs: [1_500, 3_000],
  restartAfterMs: [500, 2_000],
  cutAtMs: 3_000,
  stallAtMs: 10_000,
  faultMs: 4_000,
  submitSpanMs: 8_000,
};
const GATEWAYS = 3;
const WORKERS = 4;
const CAPACITY = 2;
/** A 1 s audio sleeps 0.3 s: the machine's cores, not the engines, set the pace. */
const TIME_SCALE = 0.3;
const SUBMIT_LANES = 8;
const SEED = 0xc4a05;
const PG_URL = process.env.MULTI_HEYGEM_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";

interface TaskJson {
  task_id: string;
  status: string;
  description: string | null;
  completed_at: string | null;
  attempts: number;
  error_message: string | null;
  result_url: string;
  audio_url: string;
}

async function getJson<T>(url: string, timeoutMs = 10_000): Promise<T> {
  const res = await request(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET ${url} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

async function allTasks(gateway: string): Promise<TaskJson[]> {
  const tasks: TaskJson[] = [];
  for (let offset = 0; ; offset += 500) {
    const page = await getJson<{ tasks: TaskJson[]; total: number }>(
      `${gateway}/tasks?limit=500&offset=${offset}`,
    );
    tasks.push(...page.tasks);
    if (page.tasks.length === 0 || tasks.length >= page.total) return tasks;
  }
}

async function dispatching(gateway: Restartable): Promise<boolean | undefined> {
  if (!gateway.up) return undefined;
  try {
    const res = await request(`${gateway.url}/metrics`, { signal: AbortSignal.timeout(1_000) });
    return /^multi_heygem_gateway_dispatching 1$/m.test(await res.body.text());
  } catch {
    return undefined;
  }
}

function refused(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  return e.code === "ECONNREFUSED" || e.cause?.code === "ECONNREFUSED";
}

async function withDatabase<T>(body: (url: string) => Promise<T>): Promise<T> {
  const name = `mh_bench_chaos_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  try {
    await admin(`create database ${name}`);
  } catch (err) {
    throw new Error(
      `the chaos benchmark needs PostgreSQL (${PG_URL}, or set MULTI_HEYGEM_TEST_PG): ${String(err)}`,
    );
  }
  try {
    await admin(`alter database ${name} set synchronous_commit = off`);
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    return await body(url.toString());
  } finally {
    await admin(`drop database if exists ${name} with (force)`);
  }
}

export const chaos: Benchmark = {
  name: "chaos",
  title: "8. Chaos: gateways and workers killed, a database connection cut (issue 13)",
  run: (ctx) => withDatabase((url) => runChaos(ctx, url)),
};

async function runChaos(ctx: BenchContext, databaseUrl: string): Promise<Measured> {
  const s = ctx.quick ? QUICK : FULL;
  const rand = mulberry32(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  const between = ([lo, hi]: Range) => lo + rand() * (hi - lo);
  const dir = await ctx.scope.tempDir("mh-bench-chaos-");
  const video = await ctx.media.video(1);
  const audios = await ctx.media.distinctAudios(s.tasks);
  const database = new URL(databaseUrl);
  const proxy = await startCuttableProxy(Number(database.port || 5432), database.hostname);
  const receiver = await startCallbackReceiver();
  try {
    // The fleet, each member on a port of its own for good.
    const ports = await freePorts(GATEWAYS + WORKERS);
    const crashes: string[] = [];
    const onCrash = (report: string) => crashes.push(report);
    const lives = new Map<string, number[]>();
    const journalPath = (name: string) => join(dir, `worker-${name}`, "journal.jsonl");
    const workers = Array.from({ length: WORKERS }, (_, i) => {
      const name = `gpu-${i + 1}`;
      const port = ports[GATEWAYS + i] as number;
      lives.set(name, []);
      return new Restartable(
        "worker",
        name,
        port,
        async () => {
          // Where this life's journal lines begin: a kill -9 ends every job of the life before.
          lives.get(name)?.push(
            await stat(journalPath(name)).then(
              (st) => st.size,
              () => 0,
            ),
          );
          return ctx.scope.startWorker(`worker-${name}`, [
            "--port",
            String(port),
            "--engine",
            "simulate",
            "--data-dir",
            join(dir, `worker-${name}`),
            "--max-concurrent",
            String(CAPACITY),
            "--time-scale",
            String(TIME_SCALE),
          ]);
        },
        onCrash,
      );
    });
    const machinesFile = join(dir, "machines.json");
    await writeFile(
      machinesFile,
      JSON.stringify({
        machines: workers.map((w) => ({
          name: w.name,
          host: "127.0.0.1",
          port: w.port,
          max_concurrent: CAPACITY,
          enabled: true,
        })),
      }),
    );
    const proxied = new URL(databaseUrl);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(proxy.port);
    const gateways = Array.from({ length: GATEWAYS }, (_, i) => {
      const name = `gateway-${String.fromCharCode(97 + i)}`;
      const port = ports[i] as number;
      return new Restartable(
        "gateway",
        name,
        port,
        () =>
          ctx.scope.startGateway(
            name,
            [
              "--store",
              // The first gateway reaches the database through the proxy: its connection can be cut.
              i === 0 ? proxied.toString() : databaseUrl,
              "--blobs-dir",
              join(dir, "shared-blobs"),
              "--data-dir",
              join(dir, name),
              "--config",
              machinesFile,
              "--health-interval",
              "500",
              "--machine-grace",
              "1000",
              "--callback-retry",
              "200",
              "--max-attempts",
              "10",
            ],
            port,
          ),
        onCrash,
      );
    });
    const cutOne = gateways[0] as Restartable;
    for (const w of workers) await w.start();
    for (const g of gateways) await g.start();
    for (const g of gateways)
      await until(
        `${g.name} to see every machine`,
        async () => {
          const { machines } = await getJson<{ machines: Array<{ state: string }> }>(`${g.url}/machines`);
          return machines.filter((m) => m.state === "up").length === WORKERS ? true : undefined;
        },
        30_000,
      );
    ctx.log(`3 gateways, 4 workers up; ${s.tasks} tasks, ${s.kills} kills, a cut and a stall`);

    // The dispatcher watched: who it is, and how long a kill -9 of it leaves nobody dispatching.
    const submitStart = Date.now();
    const takeovers: Array<{ killed: string; by: string; ms: number }> = [];
    let killedDispatcher: { name: string; at: number } | undefined;
    let completed = 0;
    const progress: Array<[number, number, number]> = [];
    const submitted: string[] = [];
    const watch = new AbortController();
    const watching = (async () => {
      let lastCount = 0;
      while (!watch.signal.aborted) {
        // The gateways' /metrics only while a takeover is awaited: each scrape counts rows.
        const awaited = killedDispatcher;
        if (awaited) {
          const others = gateways.filter((g) => g.name !== awaited.name);
          const states = await Promise.all(others.map((g) => dispatching(g)));
          const next = others.find((_, i) => states[i] === true);
          if (next) {
            takeovers.push({ killed: awaited.name, by: next.name, ms: Date.now() - awaited.at });
            killedDispatcher = undefined;
          }
        }
        if (Date.now() - lastCount >= 1_000) {
          lastCount = Date.now();
          const asked = gateways.find((g) => g.up && g !== cutOne);
          if (asked)
            completed = await getJson<{ total: number }>(`${asked.url}/tasks?status=completed&limit=1`, 2_000)
              .then((r) => r.total)
              .catch(() => completed);
          const seconds = Math.round((Date.now() - submitStart) / 1000);
          if (seconds >= 10 * progress.length) progress.push([seconds, submitted.length, completed]);
        }
        await sleep(killedDispatcher ? 100 : 250);
      }
    })();

    // The clients: each task through the next gateway, again elsewhere when that one fails.
    const tries: string[][] = Array.from({ length: s.tasks }, () => []);
    const postMs: number[] = [];
    const submitOne = async (index: number) => {
      await sleep(Math.max(0, submitStart + (index * s.submitSpanMs) / s.tasks - Date.now()));
      for (let n = 0; n < 60; n++) {
        const gateway = gateways[(index + n) % GATEWAYS] as Restartable;
        const sent = Date.now();
        try {
          const form = await multipartBody(
            [
              { field: "audio", path: audios[index] as string },
              { field: "video", path: video },
            ],
            { description: `chaos task ${index}`, callback_url: receiver.url },
          );
          const res = await request(`${gateway.url}/tasks`, {
            method: "POST",
            body: form.body,
            headers: { "content-type": form.contentType, "content-length": String(form.length) },
            signal: AbortSignal.timeout(30_000),
          });
          const body = JSON.parse(await res.body.text()) as { task_id?: string; error?: string };
          if (res.statusCode === 200 && body.task_id) {
            tries[index]?.push("ok");
            submitted.push(body.task_id);
            postMs.push(Date.now() - sent);
            return;
          }
          if (res.statusCode !== 503 && res.statusCode !== 429)
            throw new Error(
              `chaos task ${index}: ${gateway.name} answered ${res.statusCode} ${JSON.stringify(body)}`,
            );
          tries[index]?.push(`HTTP ${res.statusCode} ${body.error}`);
        } catch (err) {
          if (err instanceof Error && err.message.startsWith("chaos task")) throw err;
          tries[index]?.push(
            refused(err) ? "refused" : `lost: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        await sleep(100 + Math.random() * 200);
      }
      throw new Error(`chaos task ${index}: no gateway took it: ${tries[index]?.join("; ")}`);
    };
    let submitError: unknown;
    let submittedAt: number | undefined;
    const submitting = mapLimit(
      Array.from({ length: s.tasks }, (_, i) => i),
      SUBMIT_LANES,
      submitOne,
    ).then(
      () => {
        submittedAt = Date.now();
      },
      (err: unknown) => {
        submitError = err;
      },
    );

    // The chaos.
    const kills = { gateway: 0, dispatcher: 0, worker: 0 };
    const faults = { cut: 0, stall: 0 };
    const restarts: Promise<void>[] = [];
    const restartErrors: string[] = [];
    let fault: Promise<void> | undefined;
    let faultOn = false;
    const chaosStart = Date.now();
    const networkFault = (kind: "cut" | "stall") => {
      faultOn = true;
      faults[kind]++;
      ctx.log(`${kind === "cut" ? "cutting" : "stalling"} ${cutOne.name}'s database connection`);
      if (kind === "cut") proxy.cut();
      else proxy.stall();
      fault = sleep(s.faultMs).then(() => {
        proxy.restore();
        faultOn = false;
      });
    };
    const kill = async (member: Restartable) => {
      const wasDispatching = member.kind === "gateway" && (await dispatching(member)) === true;
      await member.kill();
      if (member.kind === "worker") kills.worker++;
      else kills.gateway++;
      if (wasDispatching) {
        kills.dispatcher++;
        killedDispatcher = { name: member.name, at: Date.now() };
      }
      restarts.push(
        sleep(between(s.restartAfterMs))
          .then(() => member.start())
          .catch((err: unknown) => {
            restartErrors.push(`${member.name}: ${err instanceof Error ? err.message : String(err)}`);
          }),
      );
    };
    while (Date.now() - chaosStart < 10 * 60_000) {
      await sleep(between(s.everyMs));
      const elapsed = Date.now() - chaosStart;
      const faultsDone = faults.cut > 0 && faults.stall > 0 && !faultOn;
      const allDone = submittedAt !== undefined && completed >= s.tasks;
      if (faultsDone && (kills.gateway + kills.worker >= s.kills || allDone)) break;
      if (!faultOn && cutOne.up) {
        if (faults.cut === 0 && elapsed >= s.cutAtMs) {
          networkFault("cut");
          continue;
        }
        if (faults.stall === 0 && elapsed >= s.stallAtMs) {
          networkFault("stall");
          continue;
        }
      }
      const gatewaysUp = gateways.filter((g) => g.up);
      const workersUp = workers.filter((w) => w.up);
      // One gateway down at most, never the one whose database is out of reach; two workers run.
      const canKillGateway = gatewaysUp.length === GATEWAYS;
      const canKillWorker = workersUp.length > 2;
      if (canKillGateway && (!canKillWorker || rand() < 0.5)) {
        const candidates = gatewaysUp.filter((g) => !(faultOn && g === cutOne));
        const states = await Promise.all(candidates.map((g) => dispatching(g)));
        const leader = candidates.find((_, i) => states[i] === true);
        // The dispatching gateway every other time: its takeover is what is timed.
        await kill(leader && rand() < 0.5 ? leader : pick(candidates));
      } else if (canKillWorker) {
        await kill(pick(workersUp));
      }
    }
    const chaosSeconds = (Date.now() - chaosStart) / 1000;
    ctx.log(
      `chaos over after ${round(chaosSeconds, 1)} s: ${kills.gateway} gateways (${kills.dispatcher} dispatching) ` +
        `and ${kills.worker} workers killed; ${completed} tasks completed so far`,
    );

    // Calm: everything back, and every task to its end.
    await fault;
    proxy.restore();
    await Promise.all(restarts);
    await submitting;
    if (submitError !== undefined) throw submitError;
    for (const member of [...gateways, ...workers]) if (!member.up) await member.start();
    const reader = gateways[1] as Restartable;
    const settled = await until(
      "every task to end",
      async () => {
        const tasks = await allTasks(reader.url);
        return tasks.every((t) => t.status !== "pending" && t.status !== "processing") ? tasks : undefined;
      },
      10 * 60_000,
      500,
    );
    watch.abort();
    await watching;
    if (crashes.length > 0) throw new Error(`a process crashed:\n${crashes.join("\n\n")}`);
    if (restartErrors.length > 0) throw new Error(`a restart failed: ${restartErrors.join("; ")}`);
    const lastCompletion = Math.max(
      ...settled.filter((t) => t.completed_at !== null).map((t) => Date.parse(t.completed_at ?? "")),
    );
    const lastCompletionSeconds = (lastCompletion - submitStart) / 1000;
    ctx.log(
      `all ${settled.length} tasks ended ${round(lastCompletionSeconds, 1)} s after the first submission`,
    );

    // The verdicts, each a count that must be 0.
    const notCompleted = settled.filter((t) => t.status !== "completed");
    const byDescription = new Map<string, TaskJson[]>();
    for (const t of settled)
      byDescription.set(t.description ?? "", [...(byDescription.get(t.description ?? "") ?? []), t]);
    const lost = Array.from({ length: s.tasks }, (_, i) => `chaos task ${i}`).filter(
      (d) => !byDescription.has(d),
    );
    const unexplainedDuplicates = tries.filter(
      (t, i) =>
        (byDescription.get(`chaos task ${i}`)?.length ?? 0) > 1 &&
        !t.some((x) => x.startsWith("lost") || x.startsWith("HTTP 503")),
    ).length;

    const ids = settled.map((t) => t.task_id).sort();
    const views = await Promise.all(gateways.map((g) => allTasks(g.url)));
    let disagreements = views.filter(
      (v) => JSON.stringify(v.map((t) => t.task_id).sort()) !== JSON.stringify(ids),
    ).length;
    const completingAttempt = new Map<string, string>();
    const completedEventId = new Map<string, number>();
    const resultOwners = new Map<string, Set<string>>();
    const comparable = (t: TaskJson) =>
      JSON.stringify({
        ...t,
        result_url: new URL(t.result_url).pathname,
        audio_url: new URL(t.audio_url).pathname,
      });
    await mapLimit(ids, 4, async (id) => {
      const task = await Promise.all(gateways.map((g) => getJson<TaskJson>(`${g.url}/tasks/${id}`)));
      const events = await Promise.all(
        gateways.map((g) =>
          getJson<{ events: Array<{ id: number; type: string; attempt_id: string | null }> }>(
            `${g.url}/tasks/${id}/events`,
          ),
        ),
      );
      const results = await Promise.all(
        gateways.map(async (g) => {
          const res = await request(`${g.url}/tasks/${id}/result`, { signal: AbortSignal.timeout(10_000) });
          const body = Buffer.from(await res.body.arrayBuffer());
          return res.statusCode === 200
            ? createHash("sha256").update(body).digest("hex")
            : `HTTP ${res.statusCode}`;
        }),
      );
      const first = task[0] as TaskJson;
      if (
        task.some((t) => comparable(t) !== comparable(first)) ||
        events.some((e) => JSON.stringify(e) !== JSON.stringify(events[0])) ||
        new Set(results).size !== 1
      )
        disagreements++;
      const done = (events[0]?.events ?? []).filter((e) => e.type === "completed");
      if (done.length === 1 && done[0]?.attempt_id) {
        completingAttempt.set(id, done[0].attempt_id);
        completedEventId.set(id, done[0].id);
      }
      const sha = results[0] as string;
      resultOwners.set(sha, (resultOwners.get(sha) ?? new Set()).add(first.description ?? ""));
    });
    const sharedResults = [...resultOwners.values()].filter((owners) => owners.size > 1).length;

    const starts = new Map<string, number>();
    let engineRuns = 0;
    let overbooked = 0;
    const peaks: Record<string, number> = {};
    for (const w of workers) {
      const text = await readFile(journalPath(w.name));
      const bounds = [...(lives.get(w.name) ?? []), text.length];
      let peak = 0;
      for (let i = 0; i + 1 < bounds.length; i++) {
        const lines = parseJournal(text.subarray(bounds[i], bounds[i + 1]).toString());
        peak = Math.max(peak, peakConcurrency(lines, "started"));
        for (const line of lines) {
          if (line.event !== "started") continue;
          engineRuns++;
          starts.set(line.job_id, (starts.get(line.job_id) ?? 0) + 1);
        }
      }
      peaks[w.name] = peak;
      if (peak > CAPACITY) overbooked++;
    }
    const notOnce = ids.filter((id) => starts.get(completingAttempt.get(id) ?? "") !== 1).length;

    // Callbacks: every completed one, each delivery under one webhook-id however often it came.
    const callbackDeadline = Date.now() + 60_000;
    const hasCompleted = (id: string) =>
      receiver.received.some((r) => r.taskId === id && r.status === "completed");
    while (Date.now() < callbackDeadline && !ids.every(hasCompleted)) await sleep(200);
    const missingCallbacks = ids.filter((id) => !hasCompleted(id)).length;
    const deliveries = new Map<string, Set<string>>();
    for (const r of receiver.received) {
      const key = `${r.taskId} ${r.eventId}`;
      deliveries.set(key, (deliveries.get(key) ?? new Set()).add(r.webhookId));
    }
    const callbacksUnderTwoIds = [...deliveries.values()].filter((set) => set.size > 1).length;
    const duplicateCallbacks = receiver.received.length - deliveries.size;

    // GET /machines: the same fleet from every gateway, once the published view caught up.
    const fleetOf = async (g: Restartable) =>
      JSON.stringify(
        (
          await getJson<{
            machines: Array<{ name: string; state: string; max_concurrent: number; tasks_done: number }>;
          }>(`${g.url}/machines`)
        ).machines
          .map((m) => `${m.name} ${m.state} ${m.max_concurrent} ${m.tasks_done}`)
          .sort(),
      );
    const fleetsAgree = await until(
      "the gateways to agree on the machines",
      async () => {
        const fleets = await Promise.all(gateways.map(fleetOf));
        return fleets.every((f) => f === fleets[0]) ? true : undefined;
      },
      30_000,
      200,
    ).catch(() => false);

    const client = new pg.Client(databaseUrl);
    await client.connect();
    const terms = await client
      .query<{ epoch: number }>("select epoch from dispatcher_term where id = 1")
      .then((r) => Number(r.rows[0]?.epoch))
      .finally(() => client.end());

    const takeoverMs = takeovers.map((t) => t.ms);
    const attempts = settled.reduce((n, t) => n + t.attempts, 0);
    const zero = { op: "<=", value: 0 } as const;
    const counts: Array<[string, number | string]> = [
      ["tasks submitted", s.tasks],
      ["tasks in the store (a retried submission may make a second)", settled.length],
      ["duplicate tasks", settled.length - byDescription.size],
      ["submission retries", tries.reduce((n, t) => n + t.length - 1, 0)],
      ["gateways killed (of which dispatching)", `${kills.gateway} (${kills.dispatcher})`],
      ["workers killed", kills.worker],
      ["database connection cut / stalled", `${faults.cut} / ${faults.stall}`],
      ["dispatcher terms begun", terms],
      ["attempts", attempts],
      ["engine runs (journal `started`)", engineRuns],
      ["callbacks received", receiver.received.length],
      ["callbacks received again (same webhook-id)", duplicateCallbacks],
      ["peak jobs at once per worker", Object.values(peaks).join(", ")],
      ["POST /tasks p50 / p90, ms", `${percentile(postMs, 50)} / ${percentile(postMs, 90)}`],
      ["chaos, s", round(chaosSeconds, 1)],
      ["first submission → last completion, s", round(lastCompletionSeconds, 1)],
    ];
    return {
      figures: [
        figure(
          "chaos.lost",
          "Chaos: tasks lost or not completed",
          lost.length + notCompleted.length,
          "",
          zero,
        ),
        figure("chaos.ran_twice", "Chaos: completing attempts not run exactly once", notOnce, "", zero),
        figure("chaos.overbooked", "Chaos: workers over max_concurrent in a life", overbooked, "", zero),
        figure("chaos.callbacks_missing", "Chaos: completed callbacks missing", missingCallbacks, "", zero),
        figure(
          "chaos.callbacks_two_ids",
          "Chaos: deliveries seen under two webhook-ids",
          callbacksUnderTwoIds,
          "",
          zero,
        ),
        figure(
          "chaos.disagreements",
          "Chaos: tasks the gateways disagree on (+1 if GET /machines differs)",
          disagreements + (fleetsAgree ? 0 : 1),
          "",
          zero,
        ),
        figure("chaos.shared_results", "Chaos: results shared by two submissions", sharedResults, "", zero),
        figure(
          "chaos.unexplained_duplicates",
          "Chaos: duplicate tasks without a lost try",
          unexplainedDuplicates,
          "",
          zero,
        ),
        figure(
          "chaos.last_completion",
          "Chaos: first submission → last completion",
          round(lastCompletionSeconds, 1),
          "s",
        ),
        figure(
          "chaos.takeover_median",
          "Chaos: kill -9 of the dispatching gateway → another dispatches (median)",
          takeoverMs.length > 0 ? round(median(takeoverMs) / 1000, 2) : Number.NaN,
          "s",
        ),
        figure(
          "chaos.takeover_max",
          "Chaos: the same, slowest",
          takeoverMs.length > 0 ? round(Math.max(...takeoverMs) / 1000, 2) : Number.NaN,
          "s",
        ),
      ],
      tables: [
        { title: "Counts", columns: ["what", "count"], rows: counts },
        {
          title: "Takeovers after a kill -9 of the dispatching gateway (GET /metrics polled every 100 ms)",
          columns: ["killed", "dispatching next", "s"],
          rows: takeovers.map((t) => [t.killed, t.by, round(t.ms / 1000, 2)]),
        },
        {
          title: "Progress (every 10 s)",
          columns: ["s since the first submission", "submitted", "completed"],
          rows: progress,
        },
      ],
      method: [
        `${GATEWAYS} gateways (\`--store postgres://…\`, one shared \`--blobs-dir\`, a data dir each, \`--health-interval 500 ` +
          `--machine-grace 1000 --max-attempts 10\`) and ${WORKERS} simulate workers (capacity ${CAPACITY}, time scale ` +
          `${TIME_SCALE}), all child processes on fixed loopback ports, so that a restarted one is the same member.`,
        `${s.tasks} tasks, each with a one-second tone of its own (so a result of its own), one 1 s template video and a ` +
          `callback_url; ${SUBMIT_LANES} clients spread them over at least ${s.submitSpanMs / 1000} s, each task to the ` +
          "next gateway and, when that one is down, answers 503, or the connection fails, to the next.",
        `Chaos (seed ${SEED}): every ${s.everyMs[0] / 1000}–${s.everyMs[1] / 1000} s a gateway or a worker gets SIGKILL ` +
          `(the dispatching gateway every other time a gateway is picked; never two gateways at once; two workers always ` +
          `run) and is restarted ${s.restartAfterMs[0] / 1000}–${s.restartAfterMs[1] / 1000} s later, ${s.kills} kills in all. ` +
          `The first gateway reaches PostgreSQL through a TCP proxy: ${s.cutAtMs / 1000} s in, its connections are cut for ` +
          `${s.faultMs / 1000} s; ${s.stallAtMs / 1000} s in, silenced (nothing forwarded, nothing closed) as long.`,
        "Takeover: from the kill -9 of the gateway whose GET /metrics said multi_heygem_gateway_dispatching 1 to another " +
          "gateway saying so (polled every 100 ms).",
        "Verdicts, each a count that must be 0: every submission completed (by its unique description; a retried one may " +
          "make a second task, which must complete too); the attempt named by each task's completed event started exactly " +
          "once in all the workers' journals; no worker ran more than max_concurrent at once in any life (a kill -9 ends a " +
          "life); a completed callback came for every task, every delivery under one webhook-id; every gateway gives the " +
          "same task list, task, events and result bytes, and the same GET /machines.",
      ],
      raw: {
        settings: s,
        kills,
        faults,
        terms,
        takeovers,
        progress,
        peaks,
        tasks: settled.length,
        attempts,
        engineRuns,
        duplicateCallbacks,
        lastCompletionSeconds,
        chaosSeconds,
      },
    };
  } finally {
    await ctx.scope.close();
    await proxy.close();
    await receiver.close();
  }
}
