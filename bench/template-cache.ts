import { stat } from "node:fs/promises";
import { type ByteCounter, startByteCounter } from "./byte-counter.js";
import { type SimWorker, startGateway, startSimWorker } from "./fleet.js";
import { mapLimit, until } from "./harness.js";
import { allEnded, allTasks, postTask } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { MB, mb, round, sum } from "./stats.js";

/**
 * Issue 5, figure 4: a template video reused by many tasks crosses to each machine once. Bytes
 * the gateway sent to each worker (counted on the wire by a TCP proxy) ÷ the bytes of that
 * machine's first task.
 */

const MACHINES = [
  { name: "gpu-1", capacity: 2 },
  { name: "gpu-2", capacity: 2 },
] as const;
const TIME_SCALE = 0.1;
const AUDIO_SECONDS = 2;

interface MachineTraffic {
  name: string;
  tasks: number;
  sentBytes: number;
  receivedBytes: number;
  connections: number;
  requests: Record<string, number>;
  firstTaskBytes: number;
  ratio: number;
}

export const templateCache: Benchmark = {
  name: "template-cache",
  title: "Template cache",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 8 : 20;
    const videoBytes = (ctx.quick ? 20 : 100) * MB;
    ctx.log(`making a ${mb(videoBytes)} MB video and ${count} audios`);
    const video = await ctx.media.bigVideo(videoBytes);
    const videoSize = (await stat(video)).size;
    // Different tones: different content, so every task brings an audio the workers lack.
    const audios = await mapLimit(
      Array.from({ length: count }, (_, i) => 300 + 25 * i),
      2,
      (hz) => ctx.media.audio(AUDIO_SECONDS, hz),
    );
    const audioSize = new Map<string, number>();
    for (const a of audios) audioSize.set(a, (await stat(a)).size);

    const dir = await ctx.scope.tempDir("mh-bench-cache-");
    const workers: SimWorker[] = await Promise.all(
      MACHINES.map((m) => startSimWorker(ctx.scope, dir, { ...m, speedFactor: 1, timeScale: TIME_SCALE })),
    );
    const counters: ByteCounter[] = [];
    try {
      for (const w of workers) counters.push(await startByteCounter(w.port));
      const gateway = await startGateway(
        ctx.scope,
        dir,
        workers.map((w, i) => ({
          name: w.spec.name,
          port: (counters[i] as ByteCounter).port,
          max_concurrent: w.spec.capacity,
        })),
        ["--health-interval", "200"],
      );
      const audioOfTask = new Map<string, string>();
      ctx.log(`submitting ${count} tasks`);
      await mapLimit(audios, 2, async (audio) => {
        const task = await postTask(gateway.url, audio, video);
        audioOfTask.set(task.task_id, audio);
      });
      await until("every task to end", () => allEnded(gateway.url, count), 300_000, 250);
      const tasks = await allTasks(gateway.url);
      const failed = tasks.filter((t) => t.status !== "completed").length;
      await gateway.child.kill();

      const traffic: MachineTraffic[] = workers.map((w, i) => {
        const counter = counters[i] as ByteCounter;
        const mine = tasks
          .filter((t) => t.machine === w.spec.name && t.started_at !== null)
          .sort((a, b) => Date.parse(a.started_at as string) - Date.parse(b.started_at as string));
        const first = mine[0];
        const firstAudio = first ? (audioSize.get(audioOfTask.get(first.task_id) ?? "") ?? 0) : 0;
        const firstTaskBytes = first ? videoSize + firstAudio : 0;
        return {
          name: w.spec.name,
          tasks: mine.length,
          sentBytes: counter.sent,
          receivedBytes: counter.received,
          connections: counter.connections,
          requests: Object.fromEntries([...counter.requests].sort(([a], [b]) => a.localeCompare(b))),
          firstTaskBytes,
          ratio: firstTaskBytes > 0 ? counter.sent / firstTaskBytes : Number.NaN,
        };
      });
      const used = traffic.filter((t) => t.tasks > 0);
      const worst = Math.max(...used.map((t) => t.ratio));
      const overall = sum(traffic.map((t) => t.sentBytes)) / sum(used.map((t) => t.firstTaskBytes));
      const firstFailure = tasks.find((t) => t.status !== "completed");
      if (firstFailure) {
        throw new Error(
          `${failed} of ${count} tasks did not complete; e.g. ${firstFailure.task_id}: ${firstFailure.error_message}`,
        );
      }
      return {
        figures: [
          figure(
            "template-cache.worst-machine",
            "Template cache: bytes to a machine ÷ its first task's bytes (worst machine)",
            round(worst, 4),
            "×",
            { op: "<=", value: 1.01 },
          ),
          figure(
            "template-cache.fleet",
            "Template cache: all bytes to workers ÷ Σ first-task bytes of machines with work",
            round(overall, 4),
            "×",
          ),
        ],
        tables: [
          {
            title: `${count} tasks, one ${mb(videoSize)} MB video, ${count} different ${AUDIO_SECONDS} s audios`,
            columns: [
              "machine",
              "tasks",
              "gateway → worker MB",
              "first task MB",
              "ratio",
              "worker → gateway MB",
              "TCP connections",
            ],
            rows: traffic.map((t) => [
              t.name,
              t.tasks,
              round(t.sentBytes / MB, 3),
              round(t.firstTaskBytes / MB, 3),
              Number.isFinite(t.ratio) ? round(t.ratio, 4) : "—",
              round(t.receivedBytes / MB, 3),
              t.connections,
            ]),
          },
          {
            title: "Requests the gateway sent each worker (request lines read off the wire by the proxy)",
            columns: ["machine", "requests"],
            rows: traffic.map((t) => [
              t.name,
              Object.entries(t.requests)
                .map(([k, n]) => `${k} × ${n}`)
                .join(", "),
            ]),
          },
        ],
        method: [
          `Two simulate workers (capacity 2 each, time scale ${TIME_SCALE}), each behind a counting TCP proxy on ` +
            "127.0.0.1 that the gateway's machines file points at; the gateway runs with `--health-interval 200`.",
          `${count} tasks POSTed (2 clients at a time) with the same ${mb(videoSize)} MB video and each its own ` +
            `${AUDIO_SECONDS} s AAC audio (a different tone, so a different blob).`,
          "Numerator: every byte the gateway wrote to a worker's connections during the whole run — blob uploads, " +
            "job PUTs, long-polls, DELETEs, health probes, HTTP headers. Denominator: the payload of that machine's " +
            "first task (video + its audio bytes), without headers or the job request, which makes the ratio a bit stricter.",
          "Ideal: each machine that got work receives the video once, then only a small audio and a JSON request per task.",
        ],
        raw: { count, videoBytes: videoSize, traffic },
      };
    } finally {
      await Promise.all(counters.map((c) => c.close()));
      await Promise.all(workers.map((w) => w.child.kill()));
    }
  },
};
