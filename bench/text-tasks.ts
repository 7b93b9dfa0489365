import { request } from "undici";
import { until } from "./harness.js";
import { getJson, HttpError, multipartBody, type StreamedBody } from "./http.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { median, percentile, round } from "./stats.js";

/**
 * Issue 12, "Measured": the time from submitting a text task to its dispatch, on the embedded
 * engine of `npm start` (an ffmpeg worker speaking with the offline voice), beside the same for a
 * task that uploads its audio. Both name an avatar, so the request carries no video and the figure
 * is the gateway's own work: read the form, check the fleet can speak, record the task, place it,
 * record the attempt.
 *
 * Runs alone with `npm run bench -- text` (a partial run writes under dist-bench/).
 */

/** Lines of a product video, 10–20 characters each, as a shop would send them. */
const LINES = [
  "你好，欢迎来到我们的直播间。",
  "今天给大家介绍一款新产品。",
  "它轻巧耐用，价格实惠。",
  "喜欢的朋友请点击下方链接。",
  "感谢收看，我们下次再见。",
];

interface Sample {
  /** Client clock, just before the request is sent → the task's `dispatched` event (gateway clock). */
  dispatchMs: number;
  /** → the first progress step the worker reported ("speech" for a text task). */
  firstStepMs: number | undefined;
  /** The POST's own answer time. */
  answerMs: number;
}

interface EventJson {
  type: string;
  at: string;
  message: string | null;
}

async function post(url: string, form: StreamedBody): Promise<{ task_id: string; avatar_id?: string }> {
  const res = await request(url, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new HttpError(res.statusCode, text, `POST ${new URL(url).pathname}`);
  return JSON.parse(text) as { task_id: string; avatar_id?: string };
}

/** One task at a time, each once the last is done: every dispatch finds the slot free. */
async function measure(gateway: string, forms: readonly (() => Promise<StreamedBody>)[]): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const form of forms) {
    const body = await form();
    const sent = Date.now();
    const { task_id } = await post(`${gateway}/tasks`, body);
    const answerMs = Date.now() - sent;
    const events = await until(
      `task ${task_id} to end`,
      async () => {
        const { events } = await getJson<{ events: EventJson[] }>(`${gateway}/tasks/${task_id}/events`);
        return events.some((e) => e.type === "completed" || e.type === "failed") ? events : undefined;
      },
      120_000,
      50,
    );
    const failed = events.find((e) => e.type === "failed");
    if (failed) throw new Error(`task ${task_id} failed: ${failed.message}`);
    const at = (type: string) => {
      const event = events.find((e) => e.type === type);
      return event ? Date.parse(event.at) - sent : undefined;
    };
    const dispatchMs = at("dispatched");
    if (dispatchMs === undefined) throw new Error(`task ${task_id} has no dispatched event`);
    samples.push({ dispatchMs, firstStepMs: at("progress"), answerMs });
  }
  return samples;
}

export const textTasks: Benchmark = {
  name: "text",
  title: "Text tasks: submit to dispatch (embedded engine)",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 5 : 10;
    const video = await ctx.media.video(2);
    const audio = await ctx.media.audio(3);
    const dir = await ctx.scope.tempDir("mh-bench-text-");
    // No --config, and a cwd without config/machines.json: `npm start`'s embedded worker.
    const gateway = await ctx.scope.startGateway("gateway", ["--data-dir", dir]);
    try {
      const created = await post(
        `${gateway.url}/avatars`,
        await multipartBody([{ field: "video", path: video }]),
      );
      const avatar = { avatar_id: created.avatar_id ?? "" };
      // One of each first: the offline voice's and ffmpeg's first runs load from disk.
      const warm = await measure(gateway.url, [
        () => multipartBody([], { text: "你好。", avatar_id: avatar.avatar_id }),
      ]);
      ctx.log(`warm-up text task dispatched after ${warm[0]?.dispatchMs} ms; ${count} of each now`);
      const text = await measure(
        gateway.url,
        Array.from(
          { length: count },
          (_, i) => () =>
            multipartBody([], { text: LINES[i % LINES.length] ?? "你好", avatar_id: avatar.avatar_id }),
        ),
      );
      const uploaded = await measure(
        gateway.url,
        Array.from(
          { length: count },
          () => () => multipartBody([{ field: "audio", path: audio }], { avatar_id: avatar.avatar_id }),
        ),
      );
      const stats = (samples: readonly Sample[], pick: (s: Sample) => number | undefined) => {
        const values = samples.map(pick).filter((v): v is number => v !== undefined);
        return { p50: median(values), p99: percentile(values, 99), max: Math.max(...values) };
      };
      const rows = [
        ["text + avatar_id", text],
        ["audio + avatar_id", uploaded],
      ] as const;
      const textDispatch = stats(text, (s) => s.dispatchMs);
      return {
        figures: [
          figure(
            "text.dispatch.p50",
            "Text task: submit → dispatched, p50",
            round(textDispatch.p50, 1),
            "ms",
          ),
          figure(
            "text.dispatch.p99",
            "Text task: submit → dispatched, p99",
            round(textDispatch.p99, 1),
            "ms",
          ),
          figure(
            "text.first-step.p50",
            "Text task: submit → the worker's first step (speech), p50",
            round(stats(text, (s) => s.firstStepMs).p50, 1),
            "ms",
          ),
          figure(
            "text.audio-dispatch.p50",
            "Audio task (same avatar): submit → dispatched, p50",
            round(stats(uploaded, (s) => s.dispatchMs).p50, 1),
            "ms",
          ),
        ],
        tables: [
          {
            title: `Submit → …, one task at a time on the embedded worker (${count} each), ms`,
            columns: ["task", "POST answered p50", "dispatched p50", "dispatched p99", "first step p50"],
            rows: rows.map(([name, samples]) => [
              name,
              round(stats(samples, (s) => s.answerMs).p50, 1),
              round(stats(samples, (s) => s.dispatchMs).p50, 1),
              round(stats(samples, (s) => s.dispatchMs).p99, 1),
              round(stats(samples, (s) => s.firstStepMs).p50, 1),
            ]),
          },
        ],
        method: [
          "A gateway child process as `npm start` runs it (embedded ffmpeg worker, offline espeak-ng voice), one " +
            "avatar; then one task at a time, each once the one before has completed, so every dispatch finds the " +
            "slot free. Text tasks send text and avatar_id (a few hundred bytes of form); audio tasks a 3 s AAC " +
            "and avatar_id.",
          "From the client's clock just before the POST to the task's `dispatched` event (the attempt recorded; " +
            "the job's PUT follows), and to its first progress event (the worker's first step: speech for a text " +
            "task). Client and gateway share the machine's clock.",
        ],
        raw: { count, text, uploaded, warm },
      };
    } finally {
      await gateway.kill();
    }
  },
};
