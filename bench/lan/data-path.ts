import { join } from "node:path";
import type { Scope } from "../harness.js";
import { getJson, multipartBody, postTaskSync, type TaskJson } from "../http.js";
import { type FileFacts, fileFacts } from "../media.js";
import {
  type BenchContext,
  type Benchmark,
  type Figure,
  figure,
  type Measured,
  type Table,
} from "../report.js";
import { MB, mb, median, round } from "../stats.js";
import { type AvatarBytes, measureAvatarBytes } from "./avatar-bytes.js";
import { type DirectTiming, runDirectTask } from "./direct-task.js";
import { CLIENT, Lan, lanUnavailable } from "./netns.js";
import { notMeasured } from "./not-measured.js";
import { sendRaw, startTcpSink } from "./raw-transfer.js";
import { engineRuns, startLanGateway, startLanWorker, workerToken } from "./services.js";
import { type LinkCount, linkDelta, tcpPayload } from "./traffic.js";

/**
 * Issue 14, "A LAN on one machine": the data path of issue 5 again, over shaped links between
 * network namespaces instead of loopback. One task with a big video, client → gateway → worker
 * (POST /tasks/sync) against the client speaking the worker protocol itself, on the same links;
 * both against the wire time, and a bare TCP transfer as the link's own ceiling. Then the bytes a
 * task that names an avatar puts on the wire.
 */

const AUDIO_SECONDS = 2;
const AVATAR_AUDIO_SECONDS = 30;

interface PathRun {
  /** Client's first byte → last byte of the result, ms. */
  readonly totalMs: number;
  /** The worker's engine, started → finished (journal), ms. */
  readonly engineMs: number;
  /** What the client sent (request bodies) and received (the result), bytes. */
  readonly uploadBytes: number;
  readonly resultBytes: number;
  readonly phases: string;
  /** TCP payload on the links during the run, MB: client sent/received, worker received/sent. */
  readonly links: { clientUp: number; clientDown: number; workerIn: number; workerOut: number };
}

interface RateRun {
  readonly mbit: number;
  readonly raw: Array<{ ms: number; bytes: number }>;
  readonly direct: PathRun[];
  readonly gateway: PathRun[];
}

/** Bytes → ms at `mbit` Mbit/s. */
const wireMs = (bytes: number, mbit: number) => (bytes * 8) / (mbit * 1e3);

export const lanDataPath: Benchmark = {
  name: "lan-data-path",
  title: "LAN: data path over shaped links",
  async run(ctx: BenchContext): Promise<Measured> {
    const rates = ctx.quick ? [1000] : [1000, 100];
    const unavailable = await lanUnavailable();
    if (unavailable) {
      return notMeasured(unavailable, [
        ["lan-data-path.ratio-1g", "LAN data path at 1 Gbit/s: gateway ÷ direct", { op: "<=", value: 1.05 }],
        [
          "lan-data-path.wire-1g",
          "LAN data path at 1 Gbit/s: gateway end-to-end ÷ wire time",
          { op: "<=", value: 1.1 },
        ],
        [
          "lan-data-path.avatar-client",
          "LAN avatar task: client → gateway payload ÷ audio",
          { op: "<=", value: 1.01 },
        ],
        [
          "lan-data-path.avatar-worker",
          "LAN avatar task: gateway → worker payload ÷ audio",
          { op: "<=", value: 1.01 },
        ],
      ]);
    }
    const videoBytes = (ctx.quick ? 20 : 100) * MB;
    ctx.log(`making a ${mb(videoBytes)} MB video and the audios`);
    const video = await fileFacts(await ctx.media.bigVideo(videoBytes));
    const audio = await fileFacts(await ctx.media.audio(AUDIO_SECONDS));
    // What each fresh process runs first, so the measured task meets a warm one (see warmUp).
    const warm: WarmUp = {
      video: await fileFacts(await ctx.media.video(1, "160x120")),
      audio: await fileFacts(await ctx.media.audio(1, 660)),
    };
    // Another person for the avatar, so that its warm is a real transfer.
    const avatarVideo = await fileFacts(await ctx.media.bigVideo(videoBytes - MB));
    const avatarTasks = ctx.quick ? 3 : 8;
    const avatarAudios = await Promise.all(
      Array.from({ length: avatarTasks }, (_, i) => ctx.media.wav(AVATAR_AUDIO_SECONDS, 300 + 17 * i)),
    );

    const { lan, removed } = await Lan.create(["gateway", "worker"], rates[0] ?? 1000);
    ctx.scope.defer(() => lan.destroy());
    if (removed.length > 0) ctx.log(`removed leftovers of an earlier run: ${removed.join(", ")}`);
    const token = workerToken();

    const runs: RateRun[] = [];
    for (const mbit of rates) {
      await lan.setRate(mbit);
      // A 100 MB transfer at 100 Mbit/s takes 8 s: fewer runs there, and fewer still in quick mode.
      const count = ctx.quick ? 1 : mbit >= 1000 ? 3 : 2;
      const rawCount = ctx.quick || mbit < 1000 ? 1 : 2;
      ctx.log(`${mbit} Mbit/s: bare TCP × ${rawCount}, then ${count} × (direct, gateway)`);
      const sink = await startTcpSink(ctx.scope, lan, "worker");
      const raw: RateRun["raw"] = [];
      for (let i = 0; i < rawCount; i++) raw.push(await sendRaw(sink, video.path));
      await sink.kill();
      const direct: PathRun[] = [];
      const gateway: PathRun[] = [];
      for (let i = 0; i < count; i++) {
        direct.push(await directRun(ctx.scope, lan, token, video, audio, warm));
        gateway.push(await gatewayRun(ctx.scope, lan, token, video, audio, warm));
      }
      runs.push({ mbit, raw, direct, gateway });
    }
    await lan.setRate(rates[0] ?? 1000);
    const avatar = await measureAvatarBytes(ctx.scope, lan, token, avatarVideo, avatarAudios, ctx.log);
    return report(runs, avatar, video, audio, lan.mbit, ctx.quick);
  },
};

/**
 * A small task of other content (a 1 s video, another tone) that each path runs on its fresh
 * processes before the measured one. A gateway or worker that has been up a while has loaded its
 * parsers, compiled its routes' serializers and prepared its statements; the measured task should
 * meet that, not a process's first request. The client's side is warm either way: it is this
 * process. (Start-up itself is measured in growth.)
 */
interface WarmUp {
  readonly video: FileFacts;
  readonly audio: FileFacts;
}

async function directRun(
  scope: Scope,
  lan: Lan,
  token: string,
  video: FileFacts,
  audio: FileFacts,
  warm: WarmUp,
): Promise<PathRun> {
  const dir = await scope.tempDir("mh-bench-lan-direct-");
  const worker = await startLanWorker(
    scope,
    lan,
    dir,
    { host: "worker", capacity: 1, speedFactor: 1, timeScale: 0 },
    token,
  );
  try {
    await runDirectTask(worker.url, token, warm.video, warm.audio, join(dir, "warm.mp4"));
    const before = await lan.counters();
    const t: DirectTiming = await runDirectTask(worker.url, token, video, audio, join(dir, "result.mp4"));
    const after = await lan.counters();
    const run = (await engineRuns(worker)).at(-1);
    return {
      totalMs: t.totalMs,
      engineMs: run ? run.finishedMs - run.startedMs : Number.NaN,
      uploadBytes: video.bytes + audio.bytes,
      resultBytes: t.resultBytes,
      phases: `upload ${round(t.uploadMs, 0)} · job ${round(t.jobMs, 0)} · result ${round(t.resultMs, 0)}`,
      links: linkMB(before, after, "worker"),
    };
  } finally {
    await worker.child.kill();
  }
}

async function gatewayRun(
  scope: Scope,
  lan: Lan,
  token: string,
  video: FileFacts,
  audio: FileFacts,
  warm: WarmUp,
): Promise<PathRun> {
  const dir = await scope.tempDir("mh-bench-lan-gateway-");
  const worker = await startLanWorker(
    scope,
    lan,
    dir,
    { host: "worker", capacity: 1, speedFactor: 1, timeScale: 0 },
    token,
  );
  const gateway = await startLanGateway(scope, lan, dir, [worker], token);
  try {
    await postTaskSync(gateway.url, warm.audio.path, warm.video.path, join(dir, "warm.mp4"));
    const out = join(dir, "result.mp4");
    // The same body postTaskSync streams, measured for its length.
    const form = await multipartBody([
      { field: "audio", path: audio.path },
      { field: "video", path: video.path },
    ]);
    form.body.destroy();
    const before = await lan.counters();
    const t0 = Date.now();
    const p0 = performance.now();
    const { taskId, bytes } = await postTaskSync(gateway.url, audio.path, video.path, out);
    const totalMs = performance.now() - p0;
    const after = await lan.counters();
    const task = await getJson<TaskJson>(`${gateway.url}/tasks/${taskId}`);
    const created = Date.parse(task.created_at);
    const started = Date.parse(task.started_at ?? task.created_at);
    const completed = Date.parse(task.completed_at ?? task.created_at);
    const run = (await engineRuns(worker)).at(-1);
    return {
      totalMs,
      engineMs: run ? run.finishedMs - run.startedMs : Number.NaN,
      uploadBytes: form.length,
      resultBytes: bytes,
      phases:
        `receive ${created - t0} · queue ${started - created} · worker ${completed - started} · ` +
        `answer ${round(t0 + totalMs - completed, 0)}`,
      links: linkMB(before, after, "worker"),
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
  }
}

function linkMB(before: Map<string, LinkCount>, after: Map<string, LinkCount>, workerHost: string) {
  const delta = (host: string) => {
    const a = after.get(host);
    if (!a) throw new Error(`no counters for ${host}`);
    return linkDelta(a, before.get(host));
  };
  const client = delta(CLIENT);
  const worker = delta(workerHost);
  return {
    clientUp: round(tcpPayload(client.sent) / MB, 2),
    clientDown: round(tcpPayload(client.received) / MB, 2),
    workerIn: round(tcpPayload(worker.received) / MB, 2),
    workerOut: round(tcpPayload(worker.sent) / MB, 2),
  };
}

function report(
  runs: readonly RateRun[],
  avatar: AvatarBytes,
  video: FileFacts,
  audio: FileFacts,
  avatarMbit: number,
  quick: boolean,
): Measured {
  const figures: Figure[] = [];
  const tables: Table[] = [];
  const med = (xs: readonly PathRun[], f: (r: PathRun) => number) => median(xs.map(f));
  for (const r of runs) {
    const rate = r.mbit >= 1000 ? `${r.mbit / 1000} Gbit/s` : `${r.mbit} Mbit/s`;
    const key = r.mbit >= 1000 ? `${r.mbit / 1000}g` : `${r.mbit}m`;
    const gatewayMs = med(r.gateway, (g) => g.totalMs);
    const directMs = med(r.direct, (d) => d.totalMs);
    // The engine's own time is the machine's work, not the network's: out of the wire ratios.
    const overWire = (p: PathRun) => (p.totalMs - p.engineMs) / wireMs(p.uploadBytes + p.resultBytes, r.mbit);
    const rawRatio = median(r.raw.map((x) => x.ms / wireMs(x.bytes, r.mbit)));
    figures.push(
      figure(
        `lan-data-path.ratio-${key}`,
        `LAN data path at ${rate}: gateway ÷ direct, one task`,
        round(gatewayMs / directMs, 3),
        "×",
        r.mbit === 1000 ? { op: "<=", value: 1.05 } : undefined,
      ),
      figure(
        `lan-data-path.wire-${key}`,
        `LAN data path at ${rate}: gateway end-to-end (less engine time) ÷ wire time`,
        round(med(r.gateway, overWire), 3),
        "×",
        { op: "<=", value: 1.1 },
      ),
      figure(
        `lan-data-path.direct-wire-${key}`,
        `LAN data path at ${rate}: direct end-to-end (less engine time) ÷ wire time`,
        round(med(r.direct, overWire), 3),
        "×",
      ),
      figure(
        `lan-data-path.raw-wire-${key}`,
        `LAN at ${rate}: bare TCP transfer of the video ÷ its wire time (the link's ceiling)`,
        round(rawRatio, 3),
        "×",
      ),
    );
    const row = (name: string, xs: readonly PathRun[]) => [
      name,
      round(
        med(xs, (p) => p.totalMs),
        0,
      ),
      round(
        med(xs, (p) => p.engineMs),
        0,
      ),
      round(
        med(xs, (p) => wireMs(p.uploadBytes + p.resultBytes, r.mbit)),
        0,
      ),
      round(med(xs, overWire), 3),
      xs[xs.length - 1]?.phases ?? "",
      (() => {
        const l = xs[xs.length - 1]?.links;
        return l ? `${l.clientUp} / ${l.clientDown} / ${l.workerIn} / ${l.workerOut}` : "";
      })(),
      xs.map((p) => round(p.totalMs, 0)).join(", "),
    ];
    tables.push({
      title: `${rate}: one task, ${mb(video.bytes)} MB video + ${round(audio.bytes / 1000, 1)} kB audio (medians of ${r.gateway.length}, ms)`,
      columns: [
        "path",
        "end-to-end",
        "engine",
        "wire time",
        "(e2e − engine) ÷ wire",
        "phases (last run)",
        "TCP payload MB: client up / down, worker in / out (last run)",
        "runs",
      ],
      rows: [
        row("direct", r.direct),
        row("gateway", r.gateway),
        [
          "bare TCP",
          round(median(r.raw.map((x) => x.ms)), 0),
          "—",
          round(wireMs(r.raw[0]?.bytes ?? 0, r.mbit), 0),
          round(rawRatio, 3),
          "connect, send the file, half-close, the sink's answer",
          `${mb(r.raw[0]?.bytes ?? 0)} up`,
          r.raw.map((x) => round(x.ms, 0)).join(", "),
        ],
      ],
    });
  }

  figures.push(
    figure(
      "lan-data-path.avatar-client",
      "LAN avatar task: client → gateway TCP payload ÷ its audio's bytes",
      round(avatar.clientPayloadRatio, 4),
      "×",
      { op: "<=", value: 1.01 },
    ),
    figure(
      "lan-data-path.avatar-worker",
      "LAN avatar task (avatar warm): gateway → worker TCP payload ÷ its audio's bytes",
      round(avatar.workerPayloadRatio, 4),
      "×",
      { op: "<=", value: 1.01 },
    ),
    figure(
      "lan-data-path.avatar-worker-frames",
      "LAN avatar task: gateway → worker Ethernet frames (headers, ACKs) ÷ its audio's bytes",
      round(avatar.workerFrameRatio, 4),
      "×",
    ),
  );
  const kB = (x: number) => round(x / 1000, 1);
  const line = (what: string, t: AvatarBytes["clientSent"]) => [
    what,
    kB(tcpPayload(t)),
    kB(t.bytes),
    round(t.frames, 1),
    kB(t.smallBytes),
    round(tcpPayload(t) / avatar.audioBytes, 4),
    round(t.bytes / avatar.audioBytes, 4),
  ];
  tables.push({
    title:
      `Avatar tasks at ${avatarMbit >= 1000 ? `${avatarMbit / 1000} Gbit/s` : `${avatarMbit} Mbit/s`}: ` +
      `per task (${avatar.tasks} tasks, ${AVATAR_AUDIO_SECONDS} s WAV audios of ${kB(avatar.audioBytes)} kB, ` +
      `avatar ${mb(avatar.avatarBytes)} MB warmed beforehand)`,
    columns: [
      "link, direction",
      "TCP payload kB",
      "frames kB",
      "frames",
      "of which small (ACK) kB",
      "payload ÷ audio",
      "frames ÷ audio",
    ],
    rows: [
      line("client → gateway", avatar.clientSent),
      line("gateway → client", avatar.clientReceived),
      line("gateway → worker", avatar.workerReceived),
      line("worker → gateway (the result)", avatar.workerSent),
    ],
  });

  const last = runs[runs.length - 1];
  return {
    figures,
    tables,
    method: [
      "The LAN: a Linux bridge in a 'switch' network namespace; the gateway and the worker each in a namespace " +
        "of its own, joined to it by a veth pair; the client is the bench process, whose veth end stays in the " +
        "initial namespace. Both ends of every veth are shaped by `tc … tbf rate R burst max(128 KiB, 2 ms of R) " +
        "latency 50ms`, so each host has a full-duplex link of R; tbf counts every Ethernet frame with its " +
        "headers (a GSO segment as the frames it becomes), not the preamble, FCS or gap. MTU 1500, no added delay " +
        "(veth round trips are tens of µs).",
      `Rates: ${runs.map((r) => `${r.mbit} Mbit/s`).join(", ")}${quick ? " (quick: 1 Gbit/s only, 20 MB video)" : ""}. ` +
        `Inputs: a ${mb(video.bytes)} MB H.264 MP4 (8 Mbit/s noise, looped by stream copy) and a ${AUDIO_SECONDS} s AAC audio.`,
      "Worker: `multi-heygem worker --engine simulate --time-scale 0` on its namespace's address with `--token`; the " +
        "gateway's machines file names it by address with `worker_token`. Each run starts a fresh worker (empty " +
        "cache) and, for the gateway path, a fresh gateway; each path first runs one small task of other content " +
        "(a 1 s 160x120 video, a 1 s tone at 660 Hz) on its fresh processes, as a service that has been up a while " +
        "has (parsers loaded, serializers compiled, statements prepared); then the measured task. The two paths alternate " +
        `(${runs.map((r) => `${r.gateway.length} runs each and ${r.raw.length} bare TCP at ${r.mbit} Mbit/s`).join(", ")}), medians compared.`,
      "Direct = the client speaks the worker protocol with the gateway's own WorkerClient: HEAD/PUT both blobs, PUT " +
        "the job, long-poll it, GET the result to disk (hashes known beforehand). Gateway = POST /tasks/sync " +
        "(multipart streamed from disk with a Content-Length), the MP4 streamed to disk; the gateway forwards the " +
        "video to the worker while it arrives (prestage).",
      "Wire time = (bytes the client sends + result bytes) × 8 ÷ R: upload and result cross each link once, and " +
        "forwarding overlaps the two hops, so no path can beat it. The engine's own time (worker journal, " +
        "started → finished: the simulate engine remuxes the result with ffmpeg) is taken off the end-to-end " +
        "time for that ratio: it is the machine's work, not the network's. Bare TCP: the same video file sent " +
        "over one connection to a sink on the worker's host, the ceiling of the link itself (TCP/IP " +
        "headers are ~4.4 % of a 1,514-byte frame).",
      `Avatar: a fresh worker (time scale 0.01) and gateway; POST /avatars of another ${mb(avatar.avatarBytes)} MB ` +
        `video with warm=true, waited for (GET /avatars/{id} lists the worker); then ${avatar.tasks} POST /tasks ` +
        `one after the other, each with avatar_id and its own ${AVATAR_AUDIO_SECONDS} s 16 kHz mono WAV (a different tone), ` +
        "the client polling GET /tasks/{id} every 250 ms until it has ended before it sends the next. Counted: the shapers' counters on the client's link and the " +
        "worker's, over the whole phase, ÷ tasks. Every frame's bytes, and apart the small ones (IP packets under " +
        "128 bytes, classed by a u32 filter into an HTB class under the tbf: pure ACKs, SYN, FIN). TCP payload = " +
        "the other frames' bytes − 66 bytes of Ethernet, IPv4 and TCP (timestamps) headers each. The worker's " +
        "link also carries the gateway's health probes (every second), the job's PUT, long-polls and DELETE, and " +
        "the ACKs of the result the gateway fetched back (template cut to the audio's length).",
      "Noise: 2 shared cores, other processes running; every child, the bench itself and the kernel's forwarding " +
        "share them, so a CPU-bound step shows as time over the wire.",
    ],
    raw: { videoBytes: video.bytes, audioBytes: audio.bytes, runs, avatar, lastRate: last?.mbit },
  };
}
