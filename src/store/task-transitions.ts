import type { TaskStatus } from "./schema.js";

/**
 * Every status change a task may make, with the event type its row is written under. The store
 * makes no other (TaskStore refuses any move missing here), so this table is the whole life of a
 * task: the seed's four public statuses plus `cancelled`, and the ways back to `pending` a client
 * can see (a machine's failure, and a client's retry of a finished task).
 */
export const TASK_TRANSITIONS = [
  /** A new task joins the queue (the row is created in this state). */
  { from: null, to: "pending", event: "queued" },
  /** An attempt starts on a machine. */
  { from: "pending", to: "processing", event: "dispatched" },
  /** The attempt failed through the machine's fault; another machine gets the task. */
  { from: "processing", to: "pending", event: "requeued" },
  { from: "processing", to: "completed", event: "completed" },
  /** The input's fault, too many attempts, or the task's deadline passed while it ran. */
  { from: "processing", to: "failed", event: "failed" },
  /** The task's deadline passed while it waited for a machine. */
  { from: "pending", to: "failed", event: "failed" },
  /** POST /tasks/{id}/cancel (or the bulk cancel): a pending task never runs. */
  { from: "pending", to: "cancelled", event: "cancelled" },
  /** POST /tasks/{id}/cancel: the attempt is fenced off at once and its job cancelled on the worker. */
  { from: "processing", to: "cancelled", event: "cancelled" },
  /** POST /tasks/{id}/retry: the same task queued again with fresh attempts. */
  { from: "failed", to: "pending", event: "retried" },
  { from: "cancelled", to: "pending", event: "retried" },
] as const satisfies readonly TaskTransition[];

interface TaskTransition {
  readonly from: TaskStatus | null;
  readonly to: TaskStatus;
  readonly event: string;
}

export type AllowedTransition = (typeof TASK_TRANSITIONS)[number];
/**
 * A change of an existing task, as its two ends (creation is not one: it has no row to change
 * yet). Distributed over the table, so a pair the table lacks does not type-check.
 */
export type TaskMove =
  Exclude<AllowedTransition, { from: null }> extends infer T
    ? T extends AllowedTransition
      ? { readonly from: T["from"]; readonly to: T["to"] }
      : never
    : never;

/** The table's entry for `from → to`; a move the table does not allow is a bug, refused loudly. */
export function allowedTransition(from: TaskStatus | null, to: TaskStatus): AllowedTransition {
  const found = TASK_TRANSITIONS.find((t) => t.from === from && t.to === to);
  if (!found) throw new Error(`task status ${from ?? "(new)"} → ${to} is not an allowed transition`);
  return found;
}
