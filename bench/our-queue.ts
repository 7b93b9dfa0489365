import { mkdir } from "node:fs/promises";
import { request } from "undici";
import { readJournal, startGateway, startSimWorker } from "./fleet.js";
import { mapLimit, type Scope, until } from "./harness.js";
import { allEnded, getJson, HttpError, multipartBody, postEmpty, type TaskJson } from "./http.js";
import type { JobRun, QueueSubject } from "./peer-queues.js";

/**
 * Ours as a queue beside BullMQ and graphile-worker (bench/peers.ts): a gateway and one simulate
 * worker of capacity 1 at zero work (speed factor 0: no sleep; the engine still writes its result
 * MP4 with one ffmpeg stream copy), child processes on 127.0.0.1. A job is `POST /tasks` with a
 * tiny audio and `avatar_id` (the video uploaded once, before), so each add uploads the audio alone.
 */

const MACHINE = "gpu-1";

export interface OurStore {
  readonly label: string;
  /** `--store` for the gateway; undefined: SQLite in its data dir. */
  readonly url?: string;
}

interface EventJson {
  type: string;
  attempt_id: string | null;
}

async function postForm(url: string, form: Awaited<ReturnType<typeof multipartBody>>): Promise<unknown> {
  const res = await request(url, {
    method: "POST",
    body: form.body,
    headers: { "content-type": form.contentType, "content-length": String(form.length) },
  });
  const text = await res.body.text();
  if (res.statusCode < 200 || res.statusCode > 299) throw new HttpError(res.statusCode, text, `POST ${url}`);
  return JSON.parse(text) as unknown;
}

export async function startOurs(
  scope: Scope,
  dir: string,
  store: OurStore,
  media: { audio: string; video: string },
): Promise<QueueSubject> {
  await mkdir(dir, { recursive: true });
  const worker = await startSimWorker(scope, dir, {
    name: MACHINE,
    capacity: 1,
    speedFactor: 0,
    timeScale: 0,
  });
  const gateway = await startGateway(
    scope,
    dir,
    [{ name: MACHINE, port: worker.port, max_concurrent: 1 }],
    store.url === undefined ? [] : ["--store", store.url],
  );
  const avatar = (await postForm(
    `${gateway.url}/avatars`,
    await multipartBody([{ field: "video", path: media.video }], { name: "peers" }),
  )) as { avatar_id: string };
  const form = () => multipartBody([{ field: "audio", path: media.audio }], { avatar_id: avatar.avatar_id });
  let created = 0;
  const sentAt = new Map<string, number>();
  const post = async () => {
    const body = await form();
    const sent = Date.now();
    const task = (await postForm(`${gateway.url}/tasks`, body)) as TaskJson;
    created++;
    sentAt.set(task.task_id, sent);
    return task.task_id;
  };
  return {
    label: `ours, ${store.label}`,
    add: post,
    async backlog(n) {
      // Held back while they are created, so the worker sees all of them queued at once.
      await postEmpty(`${gateway.url}/machines/${MACHINE}/drain`);
      const ids = await mapLimit(Array.from({ length: n }), 4, post);
      await postEmpty(`${gateway.url}/machines/${MACHINE}/resume`);
      return ids;
    },
    async idle() {
      // Done: the result is home and the gateway has deleted the job on the worker (its last step).
      await until(
        "the gateway to be done with every task",
        async () => {
          const journal = (await readJournal(worker)) ?? [];
          return journal.filter((line) => line.event === "deleted").length >= created ? true : undefined;
        },
        60_000,
        5,
      );
    },
    async runs(ids) {
      await until("every task to end", () => allEnded(gateway.url, created), 120_000, 20);
      const journal = (await readJournal(worker)) ?? [];
      const at = new Map<string, { started?: number; finished?: number }>();
      for (const line of journal) {
        const entry = at.get(line.job_id) ?? {};
        if (line.event === "started") entry.started ??= Date.parse(line.at);
        if (line.event === "finished") entry.finished ??= Date.parse(line.at);
        at.set(line.job_id, entry);
      }
      return mapLimit(ids, 4, async (id): Promise<JobRun> => {
        const task = await getJson<TaskJson>(`${gateway.url}/tasks/${id}`);
        if (task.status !== "completed" || task.attempts !== 1 || !task.started_at || !task.completed_at)
          throw new Error(
            `task ${id}: ${task.status} after ${task.attempts} attempts (${task.error_message})`,
          );
        // The worker's job id is the attempt's.
        const { events } = await getJson<{ events: EventJson[] }>(`${gateway.url}/tasks/${id}/events`);
        const attempt = events.find((e) => e.attempt_id !== null)?.attempt_id;
        const run = attempt === undefined || attempt === null ? undefined : at.get(attempt);
        if (run?.started === undefined || run.finished === undefined)
          throw new Error(`task ${id}: its attempt ${attempt} is not in the worker's journal`);
        return {
          added: Date.parse(task.created_at),
          dispatched: Date.parse(task.started_at),
          started: run.started,
          ended: run.finished,
          done: Date.parse(task.completed_at),
          sent: sentAt.get(id) ?? Number.NaN,
        };
      });
    },
    async close() {
      await gateway.child.kill();
      await worker.child.kill();
    },
  };
}
