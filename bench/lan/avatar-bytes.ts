import { stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type Scope, until } from "../harness.js";
import { allTasks, getJson, multipartBody, type TaskJson } from "../http.js";
import type { FileFacts } from "../media.js";
import { sum } from "../stats.js";
import { CLIENT, type Lan } from "./netns.js";
import { postForm } from "./post-form.js";
import { startLanGateway, startLanWorker } from "./services.js";
import { type LinkCount, linkDelta, type Traffic, tcpPayload } from "./traffic.js";

/**
 * Issue 14 on issue 12's avatars: what a task that names an avatar puts on the wire. The avatar
 * (a big template) is uploaded and warmed onto the machine once; then tasks that bring only their
 * audio run one after the other, and the links' counters say what each cost: on the client's link
 * (client → gateway) and on the worker's (gateway → worker).
 */

export interface AvatarBytes {
  readonly tasks: number;
  readonly avatarBytes: number;
  /** Mean audio file size of the tasks. */
  readonly audioBytes: number;
  /** Per task: the client's link, client → gateway. */
  readonly clientSent: Traffic;
  /** Per task: the worker's link, gateway → worker. */
  readonly workerReceived: Traffic;
  /** Per task, for the table: what came back to the client, what the worker sent the gateway. */
  readonly clientReceived: Traffic;
  readonly workerSent: Traffic;
  readonly clientPayloadRatio: number;
  readonly workerPayloadRatio: number;
  readonly clientFrameRatio: number;
  readonly workerFrameRatio: number;
}

const perTask = (t: Traffic, n: number): Traffic => ({
  bytes: t.bytes / n,
  frames: t.frames / n,
  smallBytes: t.smallBytes / n,
  smallFrames: t.smallFrames / n,
});

export async function measureAvatarBytes(
  scope: Scope,
  lan: Lan,
  token: string,
  avatar: FileFacts,
  audios: readonly string[],
  log: (m: string) => void,
): Promise<AvatarBytes> {
  const dir = await scope.tempDir("mh-bench-lan-avatar-");
  const worker = await startLanWorker(
    scope,
    lan,
    dir,
    { host: "worker", capacity: 1, speedFactor: 1, timeScale: 0.01 },
    token,
  );
  const gateway = await startLanGateway(scope, lan, dir, [worker], token);
  try {
    log(`avatar: POST /avatars (${Math.round(avatar.bytes / 1e6)} MB, warm=true)`);
    const created = (await postForm(
      `${gateway.url}/avatars`,
      await multipartBody([{ field: "video", path: avatar.path }], { name: "bench", warm: "true" }),
      "POST /avatars",
    )) as { avatar_id: string };
    await until(
      "the avatar to be warm on the worker",
      async () => {
        const view = await getJson<{ machines: string[] }>(`${gateway.url}/avatars/${created.avatar_id}`);
        return view.machines.includes(worker.spec.host) ? true : undefined;
      },
      120_000,
      100,
    );
    // The warm's last bytes and answers, and a health probe or two, settle before counting.
    await sleep(500);

    log(`avatar: ${audios.length} tasks with avatar_id, one at a time`);
    const before = await lan.counters();
    for (const audio of audios) {
      const task = (await postForm(
        `${gateway.url}/tasks`,
        await multipartBody([{ field: "audio", path: audio }], { avatar_id: created.avatar_id }),
        "POST /tasks",
      )) as { task_id: string };
      // One task on the links at a time: its result coming back to the gateway and the next
      // upload going in would share the gateway's link and be counted with each other's losses.
      await until(
        `task ${task.task_id} to end`,
        async () => {
          const view = await getJson<TaskJson>(`${gateway.url}/tasks/${task.task_id}`);
          return view.status === "completed" || view.status === "failed" ? true : undefined;
        },
        120_000,
        250,
      );
    }
    // The job's DELETE follows the result's fetch by a moment: it is part of the task's cost.
    await sleep(500);
    const after = await lan.counters();
    const failed = (await allTasks(gateway.url)).filter((t) => t.status !== "completed");
    if (failed.length > 0) {
      throw new Error(`${failed.length} avatar tasks did not complete; e.g. ${failed[0]?.error_message}`);
    }

    const delta = (host: string): LinkCount => {
      const a = after.get(host);
      if (!a) throw new Error(`no counters for ${host}`);
      return linkDelta(a, before.get(host));
    };
    const n = audios.length;
    const audioBytes = sum(await Promise.all(audios.map(async (a) => (await stat(a)).size))) / n;
    const client = delta(CLIENT);
    const machine = delta(worker.spec.host);
    const clientSent = perTask(client.sent, n);
    const workerReceived = perTask(machine.received, n);
    return {
      tasks: n,
      avatarBytes: avatar.bytes,
      audioBytes,
      clientSent,
      workerReceived,
      clientReceived: perTask(client.received, n),
      workerSent: perTask(machine.sent, n),
      clientPayloadRatio: tcpPayload(clientSent) / audioBytes,
      workerPayloadRatio: tcpPayload(workerReceived) / audioBytes,
      clientFrameRatio: clientSent.bytes / audioBytes,
      workerFrameRatio: workerReceived.bytes / audioBytes,
    };
  } finally {
    await gateway.child.kill();
    await worker.child.kill();
  }
}
