import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { ConflictError, NotFoundError } from "../../errors.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import type { CallbackStore } from "../../store/callback-store.js";
import { type CallbackRow, type CallbackTryRow, isTaskStatus } from "../../store/schema.js";
import { callbackPayload, type TaskStore } from "../../store/task-store.js";
import { visibleTask } from "../auth/access-control.js";
import { maskUrl } from "../callbacks/mask-url.js";
import { CallbackDeliveryView, ErrorBody, TaskCallbacks, TaskIdParams } from "./schemas.js";

export interface CallbackRoutesOptions {
  store: TaskStore;
  deliveries: CallbackStore;
  /** A delivery was added: send it. */
  onDelivery: () => void;
}

/**
 * A task's callback deliveries, every try of each, and sending the latest status again. All the
 * callback routes are registered here, so access control can gate them in one place.
 */
export async function callbackRoutes(app: FastifyInstance, options: CallbackRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, deliveries } = options;

  api.get(
    "/tasks/:task_id/callbacks",
    {
      config: { access: "submit" },
      schema: {
        summary: "A task's callback deliveries, each with every try",
        description:
          "One delivery per status change (and per redelivery), oldest first; each try with its time, " +
          "duration and the receiver's HTTP status or the error. The callback_url is shown masked.",
        tags: ["callbacks"],
        params: TaskIdParams,
        response: { 200: Type.Ref(TaskCallbacks), 404: Type.Ref(ErrorBody) },
      },
    },
    async (request) => {
      const task = await visibleTask(store, request, request.params.task_id);
      const rows = await deliveries.listDeliveries(task.id);
      return {
        task_id: task.id,
        callback_url: task.callback_url === null ? null : maskUrl(task.callback_url),
        deliveries: rows.map((row) => toDeliveryView(row, row.tryRows)),
      };
    },
  );

  api.post(
    "/tasks/:task_id/callbacks/redeliver",
    {
      config: { access: "submit" },
      schema: {
        summary: "Send the task's latest status to its callback_url again",
        description:
          "A new delivery, with a new webhook-id, after any still pending; it goes through the same " +
          "checks, signature and retry schedule as the others. Answers 202 with the delivery.",
        tags: ["callbacks"],
        params: TaskIdParams,
        response: { 202: Type.Ref(CallbackDeliveryView), 404: Type.Ref(ErrorBody), 409: Type.Ref(ErrorBody) },
      },
    },
    async (request, reply) => {
      const task = await visibleTask(store, request, request.params.task_id);
      if (task.callback_url === null) {
        throw new ConflictError("NO_CALLBACK_URL", `task ${task.id} has no callback_url to deliver to`);
      }
      const events = await store.listEvents(task.id);
      // Every task has one: its creation writes the change to `pending`.
      const latest = events.findLast((event) => event.to_status === task.status);
      if (!latest) throw new NotFoundError(`task ${task.id} has no status change to deliver`);
      const row = await deliveries.addDelivery({
        taskId: task.id,
        eventId: latest.id,
        url: task.callback_url,
        payload: JSON.stringify(callbackPayload(task, latest)),
      });
      request.log.info({ task_id: task.id, callback_id: row.id }, "callback redelivery queued");
      options.onDelivery();
      return reply.code(202).send(toDeliveryView(row, []));
    },
  );
}

function toDeliveryView(row: CallbackRow, tries: CallbackTryRow[]): CallbackDeliveryView {
  const payload = JSON.parse(row.payload) as { event?: unknown; status?: unknown };
  const status = payload.status;
  return {
    id: row.id,
    webhook_id: row.webhook_id,
    event: typeof payload.event === "string" ? payload.event : null,
    status: typeof status === "string" && isTaskStatus(status) ? status : null,
    state: row.state,
    created_at: row.created_at,
    next_try_at: row.state === "pending" ? row.next_at : null,
    last_error: row.last_error,
    tries: tries.map((t) => ({
      at: t.at,
      duration_ms: t.duration_ms,
      http_status: t.http_status,
      error: t.error,
    })),
  };
}
