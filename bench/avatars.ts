import { stat } from "node:fs/promises";
import { request } from "undici";
import { type BodyCounter, startBodyCounter } from "./body-counter.js";
import { type SimWorker, startGateway, startSimWorker } from "./fleet.js";
import { mapLimit, until } from "./harness.js";
import { allEnded, allTasks, HttpError, multipartBody } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { MB, mb, round, sum } from "./stats.js";

/**
 * Issue 12, "Measured": the bytes a task costs with an avatar (uploaded once, named by avatar_id)
 * against the same task uploading its video, client → gateway and gateway → workers. Counted at
 * the HTTP level: request bodies (the multipart body's Content-Length on the client side; what a
 * proxy in front of each worker reads on the other), so health probes and headers do not count.
 *
 * Runs alone with `npm run bench -- avatars` (a partial run writes under dist-bench/).
 */

const MACHINES = [
  { name: "gpu-1", capacity: 2 },
  { name: "gpu-2", capacity: 2 },
] as const;
const TIME_SCALE = 0.01;
/** A short line of speech; long enough that the form's few hundred bytes of framing are noise. */
const AUDIO_SECONDS = 30;

interface Phase {
  mode: string;
  tasks: number;
  clientBytes: number;
  workerBytes: number;
  audioBytes: number;
  /** Request body bytes to the workers by "METHOD /v1/kind". */
  workerBodies: Record<string, number>;
}

async function post(url: string, form: Awaited<ReturnType<typeof multipartBody>>, what: string) {
  const res = await request(url, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new HttpError(res.statusCode, text, what);
  return JSON.parse(text) as Record<string, unknown>;
}

export const avatars: Benchmark = {
  name: "avatars",
  title: "Avatars: bytes per task",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 4 : 8;
    const videoBytes = (ctx.quick ? 20 : 100) * MB;
    ctx.log(`making a ${mb(videoBytes)} MB video and ${2 * count} audios of ${AUDIO_SECONDS} s`);
    const video = await ctx.media.bigVideo(videoBytes);
    const videoSize = (await stat(video)).size;
    // Another person for the avatar: the warm must send it, not find the first one there already.
    const avatarVideo = await ctx.media.bigVideo(videoBytes - MB);
    const avatarSize = (await stat(avatarVideo)).size;
    // Different tones: every task brings an audio the machines lack, in both phases.
    const audios = await mapLimit(
      Array.from({ length: 2 * count }, (_, i) => 300 + 13 * i),
      2,
      (hz) => ctx.media.audio(AUDIO_SECONDS, hz),
    );
    const sizes = await Promise.all(audios.map(async (a) => (await stat(a)).size));

    const dir = await ctx.scope.tempDir("mh-bench-avatars-");
    const workers: SimWorker[] = await Promise.all(
      MACHINES.map((m) => startSimWorker(ctx.scope, dir, { ...m, speedFactor: 1, timeScale: TIME_SCALE })),
    );
    const counters: BodyCounter[] = [];
    try {
      for (const w of workers) counters.push(await startBodyCounter(w.port));
      const gateway = await startGateway(
        ctx.scope,
        dir,
        workers.map((w, i) => ({
          name: w.spec.name,
          port: (counters[i] as BodyCounter).port,
          max_concurrent: w.spec.capacity,
        })),
        ["--health-interval", "200"],
      );
      const toWorkers = () => sum(counters.map((c) => c.total));
      const bodies = () => {
        const all = new Map<string, number>();
        for (const c of counters) for (const [k, n] of c.bodies) all.set(k, (all.get(k) ?? 0) + n);
        return all;
      };
      const runPhase = async (
        mode: string,
        files: readonly string[],
        fileSizes: readonly number[],
        form: (audio: string) => ReturnType<typeof multipartBody>,
        endedBefore: number,
      ): Promise<Phase> => {
        ctx.log(`${mode}: ${files.length} tasks`);
        const workersBefore = toWorkers();
        const bodiesBefore = bodies();
        let clientBytes = 0;
        await mapLimit(files, 2, async (audio) => {
          const body = await form(audio);
          clientBytes += body.length;
          await post(`${gateway.url}/tasks`, body, "POST /tasks");
        });
        await until(
          "every task to end",
          () => allEnded(gateway.url, endedBefore + files.length),
          300_000,
          100,
        );
        return {
          mode,
          tasks: files.length,
          clientBytes,
          workerBytes: toWorkers() - workersBefore,
          audioBytes: sum([...fileSizes]),
          workerBodies: Object.fromEntries(
            [...bodies()].map(([k, n]) => [k, n - (bodiesBefore.get(k) ?? 0)]).filter(([, n]) => n !== 0),
          ),
        };
      };

      const uploaded = await runPhase(
        "video uploaded with each task",
        audios.slice(0, count),
        sizes.slice(0, count),
        (audio) =>
          multipartBody([
            { field: "audio", path: audio },
            { field: "video", path: video },
          ]),
        0,
      );

      ctx.log("POST /avatars with warm=true");
      const creation = await multipartBody([{ field: "video", path: avatarVideo }], {
        name: "bench",
        warm: "true",
      });
      const beforeWarm = toWorkers();
      const avatar = (await post(`${gateway.url}/avatars`, creation, "POST /avatars")) as {
        avatar_id: string;
        warming: string[];
      };
      // The warm runs in the background: it is over when each machine it named got the video.
      await until(
        "the warm to end",
        async () => (toWorkers() - beforeWarm >= avatar.warming.length * avatarSize ? true : undefined),
        120_000,
        100,
      );
      const warmBytes = toWorkers() - beforeWarm;

      const withAvatar = await runPhase(
        "avatar_id",
        audios.slice(count),
        sizes.slice(count),
        (audio) => multipartBody([{ field: "audio", path: audio }], { avatar_id: avatar.avatar_id }),
        count,
      );
      const failed = (await allTasks(gateway.url)).filter((t) => t.status !== "completed");
      if (failed.length > 0) {
        throw new Error(`${failed.length} tasks did not complete; e.g. ${failed[0]?.error_message}`);
      }
      await gateway.child.kill();

      const perTask = (p: Phase) => ({
        client: p.clientBytes / p.tasks,
        workers: p.workerBytes / p.tasks,
        audio: p.audioBytes / p.tasks,
      });
      const a = perTask(withAvatar);
      const blobsPerTask =
        ((withAvatar.workerBodies["PUT /v1/blobs"] ?? 0) + (withAvatar.workerBodies["POST /v1/blobs"] ?? 0)) /
        withAvatar.tasks;
      const u = perTask(uploaded);
      return {
        figures: [
          figure(
            "avatars.client-ratio",
            "Avatar task: client → gateway bytes ÷ its audio's bytes",
            round(a.client / a.audio, 4),
            "×",
            { op: "<=", value: 1.01 },
          ),
          figure(
            "avatars.workers-blob-ratio",
            "Avatar task (avatar warmed): gateway → workers blob bytes ÷ its audio's bytes",
            round(blobsPerTask / a.audio, 4),
            "×",
            { op: "<=", value: 1.01 },
          ),
          figure(
            "avatars.workers-ratio",
            "Avatar task (avatar warmed): all request bodies to workers (job requests too) ÷ its audio's bytes",
            round(a.workers / a.audio, 4),
            "×",
          ),
          figure(
            "avatars.client-saving",
            "Client → gateway bytes per task: uploaded video ÷ avatar",
            round(u.client / a.client, 1),
            "×",
          ),
        ],
        tables: [
          {
            title: `Bytes per task (request bodies), ${mb(videoSize)} MB video, ${AUDIO_SECONDS} s AAC audios, 2 machines`,
            columns: [
              "mode",
              "tasks",
              "audio kB",
              "client → gateway kB",
              "gateway → workers kB",
              "÷ audio (client, workers)",
            ],
            rows: [u, a].map((p, i) => {
              const phase = i === 0 ? uploaded : withAvatar;
              return [
                phase.mode,
                phase.tasks,
                round(p.audio / 1000, 1),
                round(p.client / 1000, 1),
                round(p.workers / 1000, 1),
                `${round(p.client / p.audio, 4)}, ${round(p.workers / p.audio, 4)}`,
              ];
            }),
          },
          {
            title: "Request bodies to the workers per task, by request",
            columns: ["mode", "requests (bytes per task)"],
            rows: [uploaded, withAvatar].map((p) => [
              p.mode,
              Object.entries(p.workerBodies)
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([k, n]) => `${k} ${round(n / p.tasks / 1000, 2)} kB`)
                .join(", "),
            ]),
          },
          {
            title: "One-off cost of the avatar",
            columns: ["step", "MB"],
            rows: [
              ["POST /avatars (client → gateway)", round(creation.length / MB, 3)],
              [`warm (gateway → ${avatar.warming.length} workers)`, round(warmBytes / MB, 3)],
            ],
          },
        ],
        method: [
          `Two simulate workers (capacity 2 each, time scale ${TIME_SCALE}), each behind an HTTP proxy that counts ` +
            "the request bodies the gateway sends it (blob uploads, job PUTs); health probes and headers are not counted.",
          `${count} tasks POSTed with the same ${mb(videoSize)} MB video and each its own ${AUDIO_SECONDS} s AAC ` +
            `audio; then one POST /avatars of another ${mb(avatarSize)} MB video with warm=true (waited for), and ` +
            `${count} tasks with avatar_id and other audios. Client bytes: each multipart body's Content-Length.`,
          "Target: with an avatar, a task costs its audio's bytes and little more (≤ 1.01 ×): the client's " +
            "whole body, and the blobs sent to workers. The job requests (PUT /v1/jobs, a few hundred bytes of " +
            "JSON, twice per task: the first is answered BLOB_MISSING for the new audio) are shown apart.",
        ],
        raw: {
          count,
          videoBytes: videoSize,
          avatarVideoBytes: avatarSize,
          uploaded,
          withAvatar,
          warmBytes,
          avatarUploadBytes: creation.length,
        },
      };
    } finally {
      await Promise.all(counters.map((c) => c.close()));
      await Promise.all(workers.map((w) => w.child.kill()));
    }
  },
};
