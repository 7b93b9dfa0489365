import { stat, statfs } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { mapLimit, until } from "../harness.js";
import { allEnded, allTasks, multipartBody } from "../http.js";
import { lineChart } from "../plot.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "../report.js";
import { MB, mb, mulberry32, round, sum } from "../stats.js";
import { localityBound, type MachineLoad, zipfCounts } from "./locality-bound.js";
import { Lan, lanUnavailable } from "./netns.js";
import { notMeasured } from "./not-measured.js";
import { postForm } from "./post-form.js";
import {
  engineRuns,
  type LanWorker,
  setMachines,
  startLanGateway,
  startLanWorker,
  workerToken,
} from "./services.js";
import { distinctTemplates } from "./templates.js";
import { type LinkCount, linkDelta, tcpPayload } from "./traffic.js";

/**
 * Issue 14, "Fleet with locality": 8 machines behind 1 Gbit/s links, 20 different big templates
 * (as avatars, uploaded once), and a queue of tasks that use them unevenly. How close the default
 * placement comes to the bound that counts each template's unavoidable first trip to each machine
 * that used it, and how many bytes it moved beyond those trips.
 */

const MACHINES = 8;
const TEMPLATES = 20;
const MBIT = 1000;
const POLICY = "earliest-finish";
const SEED = 0x10ca1;
const SUBMITTERS = 4;
/** Audio lengths are drawn from [MIN, MIN + SPAN) seconds; each file serves several tasks. */
const AUDIO_MIN = 1;
const AUDIO_SPAN = 2;

interface MachineRow {
  name: string;
  tasks: number;
  templates: number;
  engineSec: number;
  /** Σ time between a job's end and the next one's start. */
  gapSec: number;
  /** Its first job's start, since the first dispatch. */
  firstStartSec: number;
  transferSec: number;
  lastDoneSec: number;
  receivedMB: number;
  minimumMB: number;
}

export const lanFleet: Benchmark = {
  name: "lan-fleet",
  title: "LAN: fleet with template locality",
  async run(ctx: BenchContext): Promise<Measured> {
    const unavailable = await lanUnavailable();
    if (unavailable) {
      return notMeasured(unavailable, [
        ["lan-fleet.makespan", `LAN fleet: makespan ÷ locality bound, ${POLICY}`, { op: "<=", value: 1.05 }],
        ["lan-fleet.bytes", `LAN fleet: bytes to workers ÷ minimum, ${POLICY}`, { op: "<=", value: 1.05 }],
      ]);
    }
    const taskCount = ctx.quick ? 40 : 400;
    const audioFiles = ctx.quick ? 10 : 20;
    // Each task's engine time: audio × time scale, about 1 s on average in a full run (0.3 s quick),
    // close to the 0.8 s a 100 MB template takes at 1 Gbit/s: where a task runs matters.
    const timeScale = ctx.quick ? 0.15 : 0.5;
    const dir = await ctx.scope.tempDir("mh-bench-lan-fleet-");
    const wanted = (ctx.quick ? 10 : 100) * MB;
    // The gateway's copies of the templates, the workers' (with room for spread) and the results.
    const fs = await statfs(dir);
    const free = fs.bavail * fs.bsize;
    const sizeTarget = Math.min(wanted, Math.floor(free / (TEMPLATES * 6) / MB) * MB);
    if (sizeTarget < MB) throw new Error(`only ${mb(free)} MB free under ${dir}`);
    const scaledNote =
      sizeTarget < wanted
        ? `Scaled down: ${mb(free)} MB free holds ${TEMPLATES} templates of ${mb(sizeTarget)} MB, not ${mb(wanted)} MB, with their copies.`
        : undefined;

    ctx.log(`making a ${mb(sizeTarget)} MB video (${TEMPLATES} templates from it) and ${audioFiles} audios`);
    const templates = await distinctTemplates(await ctx.media.bigVideo(sizeTarget), TEMPLATES);
    const templateBytes = templates[0]?.bytes ?? sizeTarget;
    const rand = mulberry32(SEED);
    const audioSpecs = Array.from({ length: audioFiles }, (_, i) => ({
      seconds: round(AUDIO_MIN + AUDIO_SPAN * rand(), 1),
      hz: 200 + 11 * i,
    }));
    const audios = await mapLimit(audioSpecs, 2, (a) => ctx.media.audio(a.seconds, a.hz));
    const counts = zipfCounts(taskCount, TEMPLATES);
    const plan = shuffle(
      counts.flatMap((n, t) => Array.from({ length: n }, () => t)),
      rand,
    ).map((template, i) => ({ template, audio: i % audioFiles }));

    const hosts = Array.from({ length: MACHINES }, (_, i) => `w${i + 1}`);
    const { lan, removed } = await Lan.create(["gateway", ...hosts], MBIT);
    ctx.scope.defer(() => lan.destroy());
    if (removed.length > 0) ctx.log(`removed leftovers of an earlier run: ${removed.join(", ")}`);
    const token = workerToken();
    const workers: LanWorker[] = await Promise.all(
      hosts.map((host) =>
        startLanWorker(ctx.scope, lan, dir, { host, capacity: 1, speedFactor: 1, timeScale }, token),
      ),
    );
    // No machines at first: the whole queue is in before the first task can start.
    const gateway = await startLanGateway(ctx.scope, lan, dir, [], token, ["--placement", POLICY]);

    ctx.log(`POST /avatars × ${TEMPLATES} (${mb(templateBytes * TEMPLATES)} MB over the client's link)`);
    const a0 = performance.now();
    const avatarIds: string[] = [];
    for (const t of templates) {
      const created = (await postForm(`${gateway.url}/avatars`, t.avatarForm(), "POST /avatars")) as {
        avatar_id: string;
      };
      avatarIds.push(created.avatar_id);
    }
    const avatarSec = (performance.now() - a0) / 1000;

    ctx.log(`${taskCount} tasks over ${TEMPLATES} avatars (Zipf), ${SUBMITTERS} submitters`);
    const templateOf = new Map<string, number>();
    const audioOf = new Map<string, number>();
    const s0 = performance.now();
    await mapLimit(plan, SUBMITTERS, async ({ template, audio }) => {
      const form = await multipartBody([{ field: "audio", path: audios[audio] as string }], {
        avatar_id: avatarIds[template] as string,
      });
      const task = (await postForm(`${gateway.url}/tasks`, form, "POST /tasks")) as { task_id: string };
      templateOf.set(task.task_id, template);
      audioOf.set(task.task_id, audio);
    });
    const submitSec = (performance.now() - s0) / 1000;

    ctx.log(`adding the ${MACHINES} machines to the gateway's machines file; ${POLICY} places the queue`);
    const before = await lan.counters();
    await setMachines(gateway, workers, token);
    await until("every task to end", () => allEnded(gateway.url, taskCount), 600_000, 500);
    await sleep(500);
    const after = await lan.counters();
    const tasks = await allTasks(gateway.url);
    const failed = tasks.filter((t) => t.status !== "completed");
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} of ${taskCount} tasks did not complete; e.g. ${failed[0]?.error_message}`,
      );
    }
    await gateway.child.kill();

    // The clock starts at the first dispatch (the gateway's started_at: slot claimed, before any upload).
    const t0 = Math.min(...tasks.map((t) => Date.parse(t.started_at as string)));
    const audioBytes = await Promise.all(audios.map(async (a) => (await stat(a)).size));
    const doneAt = (t: (typeof tasks)[number]) => (Date.parse(t.completed_at as string) - t0) / 1000;
    const makespanSec = Math.max(...tasks.map(doneAt));
    const rows: MachineRow[] = [];
    const loads: MachineLoad[] = [];
    for (const w of workers) {
      const mine = tasks.filter((t) => t.machine === w.spec.host);
      const used = new Set(mine.map((t) => templateOf.get(t.task_id)));
      const usedAudio = new Set(mine.map((t) => audioOf.get(t.task_id) ?? -1));
      const runs = await engineRuns(w);
      const engine = sum(runs.map((r) => (r.finishedMs - r.startedMs) / 1000));
      // From one job's end to the next one's start: the result's fetch, the task's completion, the
      // next dispatch (audio upload, job request) and, when it is new here, the template's upload.
      const gaps = runs.slice(1).map((r, i) => (r.startedMs - (runs[i]?.finishedMs ?? r.startedMs)) / 1000);
      const received = linkDelta(after.get(w.spec.host) as LinkCount, before.get(w.spec.host)).received;
      loads.push({
        name: w.spec.host,
        capacity: w.spec.capacity,
        engineSeconds: engine,
        templates: used.size,
      });
      rows.push({
        name: w.spec.host,
        tasks: mine.length,
        templates: used.size,
        engineSec: engine,
        gapSec: sum(gaps),
        firstStartSec: runs[0] ? (runs[0].startedMs - t0) / 1000 : 0,
        transferSec: (used.size * templateBytes * 8) / (MBIT * 1e6),
        lastDoneSec: mine.length > 0 ? Math.max(...mine.map(doneAt)) : 0,
        receivedMB: tcpPayload(received) / MB,
        minimumMB: (used.size * templateBytes + sum([...usedAudio].map((a) => audioBytes[a] ?? 0))) / MB,
      });
    }
    const bound = localityBound(loads, templateBytes, MBIT);
    const movedMB = sum(rows.map((r) => r.receivedMB));
    const minimumMB = sum(rows.map((r) => r.minimumMB));
    const spread = sum(rows.map((r) => r.templates));
    const nominalSec = (sum(plan.map((p) => audioSpecs[p.audio]?.seconds ?? 0)) * timeScale) / MACHINES;

    const finished = tasks.map(doneAt).sort((a, b) => a - b);
    return {
      figures: [
        figure(
          "lan-fleet.makespan",
          `LAN fleet: makespan ÷ locality bound, ${POLICY} (${MACHINES} machines, ${TEMPLATES} templates, ${taskCount} tasks)`,
          round(makespanSec / bound.boundSec, 3),
          "×",
          { op: "<=", value: 1.05 },
        ),
        figure(
          "lan-fleet.bytes",
          `LAN fleet: TCP payload to workers ÷ minimum (each template once to each machine that used it), ${POLICY}`,
          round(movedMB / minimumMB, 4),
          "×",
          { op: "<=", value: 1.05 },
        ),
        figure(
          "lan-fleet.spread",
          `LAN fleet: template transfers ÷ templates (1 = each template on one machine), ${POLICY}`,
          round(spread / TEMPLATES, 2),
          "×",
        ),
      ],
      tables: [
        {
          title: `${POLICY}: makespan and its bound (s)`,
          columns: [
            "makespan",
            "bound",
            "compute bound",
            "gateway link bound",
            "busiest machine bound",
            "sleep-only compute bound",
          ],
          rows: [
            [
              round(makespanSec, 2),
              round(bound.boundSec, 2),
              round(bound.computeSec, 2),
              round(bound.gatewayLinkSec, 2),
              `${round(bound.machineSec, 2)} (${bound.machine})`,
              round(nominalSec, 2),
            ],
          ],
        },
        {
          title: "Per machine",
          columns: [
            "machine",
            "tasks",
            "templates",
            "engine s",
            "first transfers s",
            "engine + transfers s",
            "first job started s",
            "between jobs s (mean ms)",
            "last done s",
            "TCP payload in MB",
            "minimum MB",
          ],
          rows: rows.map((r) => [
            r.name,
            r.tasks,
            r.templates,
            round(r.engineSec, 2),
            round(r.transferSec, 2),
            round(r.engineSec + r.transferSec, 2),
            round(r.firstStartSec, 2),
            `${round(r.gapSec, 2)} (${r.tasks > 1 ? round((r.gapSec * 1000) / (r.tasks - 1), 0) : "—"})`,
            round(r.lastDoneSec, 2),
            round(r.receivedMB, 1),
            round(r.minimumMB, 1),
          ]),
        },
        {
          title: "Tasks per template (Zipf, exponent 1)",
          columns: ["template", ...counts.map((_, i) => String(i + 1))],
          rows: [["tasks", ...counts]],
        },
      ],
      plots: [
        {
          file: "lan-fleet-completions.svg",
          title: "LAN fleet: tasks completed over time",
          svg: lineChart({
            title: `${taskCount} tasks on ${MACHINES} machines, ${POLICY}`,
            xLabel: "seconds since the first dispatch",
            yLabel: "tasks completed",
            series: [
              { name: "completed", points: finished.map((s, i) => [round(s, 2), i + 1] as const) },
              {
                name: "at the bound's pace",
                points: [
                  [0, 0],
                  [round(bound.boundSec, 2), taskCount],
                ],
              },
            ],
          }),
        },
      ],
      method: [
        `LAN as in lan-data-path (namespaces on a bridge, every link shaped to ${MBIT} Mbit/s both ways by ` +
          `tbf): a gateway and ${MACHINES} workers (\`--engine simulate\`, capacity 1, speed factor 1, time scale ` +
          `${timeScale}, \`--token\`), each on its own host; the client is the bench process on its own link.`,
        `${TEMPLATES} templates of ${mb(templateBytes)} MB: one H.264 MP4 (8 Mbit/s noise), each template followed by ` +
          "an MP4 `free` box of its own, so each has its own SHA-256 (content-addressed blobs: to the product they " +
          "are different files); made on the fly as the upload streams. " +
          `Uploaded once each as avatars (POST /avatars, no warm; ${round(avatarSec, 1)} s) before the clock starts.`,
        `${taskCount} tasks, each with avatar_id and an AAC audio: template popularity by Zipf's law with exponent 1 ` +
          `(counts in the last table), the order shuffled (mulberry32, seed 0x${SEED.toString(16)}); ${audioFiles} audio ` +
          `files of ${AUDIO_MIN}–${AUDIO_MIN + AUDIO_SPAN} s (drawn with the same generator), task i uses file i mod ${audioFiles}. ` +
          `POSTed by ${SUBMITTERS} concurrent clients (${round(submitSec, 1)} s); the gateway runs \`--placement ${POLICY}\`.`,
        "The gateway starts with an empty machines file, so every task is queued before any can start; then the " +
          `bench writes the ${MACHINES} workers into it (the gateway watches it) and they come up within one health ` +
          "probe. Makespan = the last completed_at − the first started_at (the first dispatch: its slot claimed, " +
          "before any upload), both the gateway's clock.",
        "Bound = max(compute bound, gateway link bound, busiest machine bound), on the machines this run used: " +
          "compute bound = Σ engine seconds ÷ Σ slots; gateway link bound = Σ over machines of the distinct " +
          `templates it ran × ${mb(templateBytes)} MB × 8 ÷ ${MBIT} Mbit/s (every first transfer leaves the gateway ` +
          "over its one link); busiest machine bound = max over machines of the larger of its first template's " +
          "transfer + its engine seconds ÷ capacity (nothing runs there before a template has arrived) and all its " +
          "first transfers at the link rate (its own link carries them; the gateway sends a waiting task's template " +
          "ahead while the machine works, so the later ones may overlap its work). Engine seconds are the workers' own (journal, started → finished: the sleep of audio × time " +
          "scale plus the simulate engine's ffmpeg remux), so the bound holds what the machines really had to do; " +
          "'sleep-only compute bound' is the same with the nominal sleeps alone.",
        "'Between jobs' (journals): Σ from a job's end to the next one's start on that machine — the gateway " +
          "noticing the end (its long-poll answers), a placement pass, the next dispatch (audio HEAD/PUT, job " +
          "request) and, for a template new there that was not sent ahead in time, its upload. The result comes home after the slot " +
          "is given back, so its fetch is not in it.",
        "Bytes: TCP payload the workers' links carried in (tc counters on the switch's end: frame bytes less 66 " +
          "header bytes per data frame; ACKs apart) from the moment the machines are added to the end, ÷ the minimum: each template " +
          "once to each machine that ran it, plus each audio file once to each machine that used it. The excess is " +
          "job requests, long-polls, health probes and DELETEs, and any template sent twice.",
        "Only the default policy runs: least-loaded and round-robin ignore where templates are and would send " +
          `nearly every template to every machine (up to ${MACHINES * TEMPLATES} transfers, ${mb(MACHINES * TEMPLATES * templateBytes)} MB, ` +
          "minutes over one gateway link), past this benchmark's time budget.",
        "Noise: 2 shared cores for the gateway, 8 workers, their ffmpeg runs and the bench; engine times absorb " +
          "the workers' share, the gateway's own delays count against it.",
        ...(scaledNote ? [scaledNote] : []),
      ],
      raw: {
        taskCount,
        templateBytes,
        timeScale,
        counts,
        audioSpecs,
        makespanSec,
        bound,
        submitSec,
        avatarSec,
        movedMB,
        minimumMB,
        machines: rows,
      },
    };
  },
};

/** Fisher–Yates with the given generator. */
function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
