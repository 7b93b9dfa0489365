import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { EventStream, type StreamMessage } from "../../http/event-stream.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import { type EventRow, FINAL_TASK_STATUSES, type TaskRow } from "../../store/schema.js";
import type { TaskChange, TaskStore } from "../../store/task-store.js";
import { ownerScope, visibleTask } from "../auth/access-control.js";
import type { Clock } from "../clock.js";
import { ErrorBody, StreamQuery, TaskIdParams } from "./schemas.js";
import { toEventView, toTaskView } from "./task-views.js";

export interface TaskStreamRoutesOptions {
  clock: Clock;
  store: TaskStore;
  /** The gateway is closing: every stream ends, so that close does not wait on them. */
  shutdown: AbortSignal;
  /** Milliseconds between keep-alive comments. */
  keepAliveMs?: number;
  /** Most events replayed to a returning client; past it the client is told to reload (`reset`). */
  maxReplay?: number;
}

/** A client away longer than this many events is told to reload rather than replayed. */
const MAX_REPLAY = 1000;
const KEEP_ALIVE_MS = 15_000;
const STREAM = { maxBufferedBytes: 1 << 20, retryMs: 3000 };

const STREAM_DESCRIPTION = `Server-Sent Events (text/event-stream). Messages:

- \`task\` (with an \`id\`): a change of a task, \`{task, event}\`: the task as it is now and the event row written for the change (as in \`GET /tasks/{task_id}/events\`).
- \`progress\` (no \`id\`): the running task's progress moved, \`{task}\`; not kept in the task's log, so not replayed.
- \`snapshot\` (one task, first message of a fresh connection): \`{task}\`.
- \`ready\` (all tasks, first message of a fresh connection): \`{last_event_id}\`.
- \`reset\`: more than ${MAX_REPLAY} events were missed; reload what you show (\`GET /tasks\`), then go on.

Resumable: reconnect with the \`Last-Event-ID\` header (EventSource does it by itself), or \`?last_event_id=\`, and the events written meanwhile come first. Comments (\`: keep-alive\`) come every ${KEEP_ALIVE_MS / 1000} s.`;

/**
 * Live task changes for dashboards and CLIs (issue 11), from the store's committed changes. A
 * client that was away gets what it missed from the events table, whose ids are the stream's
 * ids, so nothing is held in memory per client beyond a bounded write buffer.
 */
export async function taskStreamRoutes(
  app: FastifyInstance,
  options: TaskStreamRoutesOptions,
): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store } = options;
  const maxReplay = options.maxReplay ?? MAX_REPLAY;
  const eventStream = {
    200: Type.String({
      description: "Server-Sent Events: task, progress, snapshot, ready and reset messages (see above)",
      example: 'id: 42\nevent: task\ndata: {"task":{…},"event":{"id":42,"type":"dispatched",…}}\n\n',
    }),
  };

  api.get(
    "/tasks/stream",
    {
      config: { access: "submit" },
      schema: {
        summary: "Live changes of every task the key may see",
        description: STREAM_DESCRIPTION,
        tags: ["tasks"],
        querystring: StreamQuery,
        produces: ["text/event-stream"],
        response: { ...eventStream, 400: Type.Ref(ErrorBody) },
      },
    },
    async (request, reply) => {
      const owner = ownerScope(request);
      const after = lastEventId(request, request.query.last_event_id);
      const stream = open(request, reply, (task) => owner === undefined || task.owner === owner);
      await stream.start(async () => {
        if (after === undefined) {
          const last = await store.lastEventId();
          return { replay: [], first: { id: last, event: "ready", data: { last_event_id: last } } };
        }
        const missed = await store.eventsAfter(after, {
          limit: maxReplay,
          ...(owner === undefined ? {} : { owner }),
        });
        if (missed.length < maxReplay) return { replay: missed };
        const last = await store.lastEventId();
        return { replay: [], first: { id: last, event: "reset", data: { last_event_id: last } } };
      });
      return reply;
    },
  );

  api.get(
    "/tasks/:task_id/stream",
    {
      config: { access: "submit" },
      schema: {
        summary: "Live changes of one task; ends once the task is final",
        description: `${STREAM_DESCRIPTION}\n\nA reconnection after the task's final event answers 204, which tells EventSource to stop.`,
        tags: ["tasks"],
        params: TaskIdParams,
        querystring: StreamQuery,
        produces: ["text/event-stream"],
        response: {
          ...eventStream,
          204: Type.Null({ description: "Nothing more will come" }),
          404: Type.Ref(ErrorBody),
        },
      },
    },
    async (request, reply) => {
      const task = await visibleTask(store, request, request.params.task_id);
      const after = lastEventId(request, request.query.last_event_id);
      if (after !== undefined && FINAL_TASK_STATUSES.has(task.status)) {
        if ((await store.lastEventId(task.id)) <= after) return reply.code(204).send(null);
      }
      const stream = open(request, reply, (t) => t.id === task.id, { endWhenFinal: true });
      await stream.start(async () => {
        if (after !== undefined) {
          const missed = await store.eventsAfter(after, { taskId: task.id, limit: maxReplay });
          if (missed.length < maxReplay) return { replay: missed };
        }
        const now = (await store.getTask(task.id)) ?? task;
        const last = await store.lastEventId(task.id);
        return {
          replay: [],
          first: { id: last, event: "snapshot", data: { task: toTaskView(now, request) } },
          final: now,
        };
      });
      return reply;
    },
  );

  /** A stream of the changes `wanted` lets through, live from the moment it is opened. */
  function open(
    request: FastifyRequest,
    reply: FastifyReply,
    wanted: (task: TaskRow) => boolean,
    { endWhenFinal = false } = {},
  ) {
    const stream = new EventStream(STREAM);
    // Live changes are held back until what the client missed has been sent, then follow it.
    let held: TaskChange[] | undefined = [];
    // Ids up to here were sent by the catch-up (snapshot or replay), and are not sent again. Live
    // changes are not held to the order of their ids: ids become visible in order
    // (store/dialect.ts, inEventOrder), but on PostgreSQL two commits can reach this process the
    // other way round, and the later one must still go out.
    let caughtUpTo = 0;
    const deliver = (task: TaskRow, event: EventRow) => {
      if (event.id <= caughtUpTo) return;
      stream.send({
        id: event.id,
        event: "task",
        data: { task: toTaskView(task, request), event: toEventView(event) },
      });
      if (endWhenFinal && isFinal(event.to_status)) stream.close();
    };
    const onChange = (change: TaskChange) => {
      if (!wanted(change.task)) return;
      if (held) held.push(change);
      else deliver(change.task, change.event);
    };
    const onProgress = (task: TaskRow) => {
      if (held || !wanted(task)) return;
      stream.send({ event: "progress", data: { task: toTaskView(task, request) } });
    };
    store.changes.on("change", onChange);
    store.changes.on("progress", onProgress);
    const keepAlive = options.clock.setInterval(
      () => stream.keepAlive(),
      options.keepAliveMs ?? KEEP_ALIVE_MS,
    );
    const end = () => stream.close();
    options.shutdown.addEventListener("abort", end, { once: true });
    stream.onClose(() => {
      store.changes.off("change", onChange);
      store.changes.off("progress", onProgress);
      keepAlive.cancel();
      options.shutdown.removeEventListener("abort", end);
    });
    if (options.shutdown.aborted) stream.close();
    void reply
      .header("content-type", "text/event-stream; charset=utf-8")
      .header("cache-control", "no-cache")
      // nginx buffers responses by default, which would hold events back until the buffer fills.
      .header("x-accel-buffering", "no")
      .send(stream.body);
    // Let the client's headers go out before any message: a quiet stream must still look open.
    reply.raw.flushHeaders();

    return {
      async start(
        catchUp: () => Promise<{
          replay: { task: TaskRow; event: EventRow }[];
          first?: StreamMessage & { id: number };
          final?: TaskRow;
        }>,
      ): Promise<void> {
        try {
          const { replay, first, final } = await catchUp();
          if (first) {
            stream.send(first);
            caughtUpTo = first.id;
          }
          for (const { task, event } of replay) {
            deliver(task, event);
            caughtUpTo = Math.max(caughtUpTo, event.id);
          }
          const waiting = held ?? [];
          held = undefined;
          for (const change of waiting) deliver(change.task, change.event);
          if (endWhenFinal && final && FINAL_TASK_STATUSES.has(final.status)) stream.close();
        } catch (err) {
          // The headers are out: the only way left to say "failed" is to end the stream, after
          // which the client reconnects and tries again.
          request.log.warn({ err }, "event stream could not catch up; closing it");
          stream.close();
        }
      },
    };
  }
}

function isFinal(status: string | null): boolean {
  return status !== null && (FINAL_TASK_STATUSES as ReadonlySet<string>).has(status);
}

/** The client's position: the `Last-Event-ID` header (set by EventSource on reconnect) or the query. */
function lastEventId(request: FastifyRequest, query: number | undefined): number | undefined {
  const header = request.headers["last-event-id"];
  const text = Array.isArray(header) ? header[0] : header;
  if (text !== undefined && /^\d{1,15}$/.test(text.trim())) return Number(text.trim());
  return query;
}
