import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type ReadMessage, readEventStream } from "../../src/http/event-stream-reader.js";
import type { WorkerHandle } from "../../src/worker/agent.js";
import { bearer, type TestKey, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

interface StreamData {
  task?: { task_id: string; status: string; progress: number; machine: string | null };
  event?: { id: number; type: string; to_status: string | null };
  last_event_id?: number;
}

/** An open SSE connection read in the background: what came so far, and whether it ended. */
class Listener {
  readonly messages: (ReadMessage & { json: StreamData })[] = [];
  ended = false;
  status = 0;
  private readonly abort = new AbortController();

  static async open(url: string, headers: Record<string, string> = {}): Promise<Listener> {
    const listener = new Listener();
    const res = await fetch(url, { headers, signal: listener.abort.signal });
    listener.status = res.status;
    if (res.body && res.status === 200) {
      void (async () => {
        try {
          for await (const m of readEventStream(res.body as AsyncIterable<Uint8Array>)) {
            listener.messages.push({ ...m, json: JSON.parse(m.data) as StreamData });
          }
        } catch {
          // aborted by close()
        }
        listener.ended = true;
      })();
    } else {
      listener.ended = true;
    }
    return listener;
  }

  of(event: string) {
    return this.messages.filter((m) => m.event === event);
  }

  close(): void {
    this.abort.abort();
  }
}

describe("live task changes over Server-Sent Events", () => {
  let dir: string;
  let engine: GateEngine;
  let worker: WorkerHandle;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  const listeners: Listener[] = [];
  const admin = testKey("boss", "admin");
  const shop = testKey("shop", "submit");
  const studio = testKey("studio", "submit");

  const listen = async (path: string, headers: Record<string, string> = {}) => {
    const l = await Listener.open(`${gateway.url}${path}`, headers);
    listeners.push(l);
    return l;
  };

  const submit = async (key: TestKey): Promise<string> => {
    const form = await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } });
    const res = await fetch(`${gateway.url}/tasks`, { method: "POST", body: form, headers: bearer(key) });
    expect(res.status).toBe(200);
    return ((await res.json()) as { task_id: string }).task_id;
  };

  const events = async (id: string) =>
    (
      (await (await fetch(`${gateway.url}/tasks/${id}/events`, { headers: bearer(admin) })).json()) as {
        events: { id: number; type: string }[];
      }
    ).events;

  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    engine = new GateEngine(1);
    worker = await startLocalWorker(join(dir, "worker"), engine);
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({
        machines: [{ name: "gpu", host: "127.0.0.1", port: worker.port, max_concurrent: 1 }],
      }),
    );
    await writeKeysFile(join(dir, "keys.json"), [admin, shop, studio]);
    gateway = await startTestGateway(
      { config: join(dir, "machines.json"), apiKeys: join(dir, "keys.json") },
      join(dir, "gateway"),
      { streamReplay: 5 },
    );
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterEach(async () => {
    for (const l of listeners.splice(0)) l.close();
    await gateway.close();
    await worker.close();
    await removeDir(dir);
  });

  it("follows one task from a snapshot to its final event, then ends; a late return gets 204", async () => {
    const id = await submit(shop);
    const stream = await listen(`/tasks/${id}/stream`, bearer(shop));
    expect(stream.status).toBe(200);
    const [first] = await until(() => (stream.messages.length > 0 ? stream.messages : undefined));
    expect(first?.event).toBe("snapshot");
    expect(first?.json.task?.task_id).toBe(id);

    const [job] = await until(() => (engine.running.length > 0 ? engine.running : undefined));
    engine.progress(job ?? "", 3);
    // Progress below a step of the log is sent live, without an id: it is not history.
    const progress = await until(() => stream.of("progress").find((m) => m.json.task?.progress === 3));
    expect(progress.lastEventId).toBe(stream.messages.at(-2)?.lastEventId ?? first?.lastEventId);
    engine.release(job ?? "");
    await until(() => stream.ended);

    const changes = stream.of("task");
    const log = await events(id);
    // Every event written after the snapshot arrived once, in order, under its row id.
    const after = log.filter((e) => e.id > Number(first?.lastEventId));
    expect(changes.map((m) => m.json.event?.id)).toEqual(after.map((e) => e.id));
    expect(changes.map((m) => Number(m.lastEventId))).toEqual(after.map((e) => e.id));
    expect(changes.at(-1)?.json.task?.status).toBe("completed");

    const last = log.at(-1)?.id ?? 0;
    const late = await listen(`/tasks/${id}/stream`, { ...bearer(shop), "last-event-id": String(last) });
    expect(late.status).toBe(204);
  });

  it("replays what a returning client missed, from Last-Event-ID, then goes on live", async () => {
    const id = await submit(shop);
    const queued = (await events(id))[0]?.id ?? 0;
    const [job] = await until(() => (engine.running.length > 0 ? engine.running : undefined));
    await until(async () => (await events(id)).some((e) => e.type === "dispatched"));
    const stream = await listen(`/tasks/${id}/stream?last_event_id=${queued}`, bearer(shop));
    await until(() => stream.of("task").some((m) => m.json.event?.type === "dispatched"));
    expect(stream.of("snapshot")).toHaveLength(0);
    engine.release(job ?? "");
    await until(() => stream.ended);
    const log = await events(id);
    expect(stream.of("task").map((m) => m.json.event?.id)).toEqual(log.slice(1).map((e) => e.id));
  });

  it("shows a submit key only its own tasks, and an admin key all of them", async () => {
    const own = await listen("/tasks/stream", bearer(shop));
    const all = await listen("/tasks/stream", bearer(admin));
    await until(() => own.messages.length > 0 && all.messages.length > 0);
    expect(own.messages[0]?.event).toBe("ready");

    const mine = await submit(shop);
    const theirs = await submit(studio);
    await until(() => all.of("task").filter((m) => m.json.event?.type === "queued").length === 2);
    await until(() => own.of("task").some((m) => m.json.task?.task_id === mine));
    const [job] = await until(() => (engine.running.length > 0 ? engine.running : undefined));
    engine.release(job ?? "");
    await until(() => all.of("task").some((m) => m.json.task?.status === "completed"));
    await until(() => own.of("task").some((m) => m.json.task?.status === "completed"));
    expect(own.messages.some((m) => m.json.task?.task_id === theirs)).toBe(false);
    expect(all.of("task").some((m) => m.json.task?.task_id === theirs)).toBe(true);
    expect((await listen(`/tasks/${theirs}/stream`, bearer(shop))).status).toBe(404);
    expect((await listen("/tasks/stream")).status).toBe(401);
  });

  it("tells a client that missed more than it can replay to reload, and goes on from now", async () => {
    const before = await listen("/tasks/stream", bearer(admin));
    const ready = await until(() => before.messages[0]);
    before.close();
    for (let i = 0; i < 4; i++) await submit(shop);
    // Four queued events and a dispatched one: more than the replay limit (5) of this gateway.
    await until(async () => {
      const list = (await (
        await fetch(`${gateway.url}/tasks?status=processing`, { headers: bearer(admin) })
      ).json()) as {
        total: number;
      };
      return list.total === 1;
    });
    const back = await listen(`/tasks/stream`, { ...bearer(admin), "last-event-id": ready.lastEventId });
    const [first] = await until(() => (back.messages.length > 0 ? back.messages : undefined));
    expect(first?.event).toBe("reset");
    expect(first?.json.last_event_id).toBeGreaterThan(Number(ready.lastEventId));
    const [job] = await until(() => (engine.running.length > 0 ? engine.running : undefined));
    engine.release(job ?? "");
    await until(() => back.of("task").some((m) => m.json.task?.status === "completed"));
  });

  it("forgets a client that hangs up: nothing stays subscribed for it", async () => {
    const baseline = gateway.store.changes.listenerCount("change");
    const streams = await Promise.all([1, 2, 3].map(() => listen("/tasks/stream", bearer(admin))));
    await until(() => streams.every((s) => s.messages.length > 0));
    expect(gateway.store.changes.listenerCount("change")).toBe(baseline + 3);
    for (const s of streams) s.close();
    await until(() => gateway.store.changes.listenerCount("change") === baseline);
    expect(gateway.store.changes.listenerCount("progress")).toBe(0);
  });

  it("ends every stream when the gateway closes, so that close does not wait on them", async () => {
    const stream = await listen("/tasks/stream", bearer(admin));
    await until(() => stream.messages.length > 0);
    await gateway.close();
    await until(() => stream.ended);
  });
});
