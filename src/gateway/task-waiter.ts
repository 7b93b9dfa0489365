import type { TaskRow } from "../store/schema.js";
import { FINAL_TASK_STATUSES } from "../store/schema.js";
import type { TaskChange, TaskStore } from "../store/task-store.js";
import type { Clock, Timer } from "./clock.js";

/**
 * Resolves with the task once it is final (completed, failed or cancelled), or with its latest
 * row when `timeoutMs` passes or `signal` aborts first. Waiting never changes the task: a client that gives up does
 * not cancel its work.
 */
export async function waitForFinal(
  clock: Clock,
  store: TaskStore,
  taskId: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<TaskRow | undefined> {
  let onChange: ((c: TaskChange) => void) | undefined;
  let timer: Timer | undefined;
  let onAbort: (() => void) | undefined;
  // Listen before reading, so a change between the read and the listen cannot be missed.
  const changed = new Promise<TaskRow | undefined>((resolve) => {
    onChange = (c) => {
      if (c.task.id === taskId && FINAL_TASK_STATUSES.has(c.task.status)) resolve(c.task);
    };
    store.changes.on("change", onChange);
    timer = clock.setTimeout(() => resolve(undefined), timeoutMs);
    onAbort = () => resolve(undefined);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const now = await store.getTask(taskId);
    if (!now || FINAL_TASK_STATUSES.has(now.status)) return now;
    return (await changed) ?? (await store.getTask(taskId));
  } finally {
    if (onChange) store.changes.off("change", onChange);
    timer?.cancel();
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}
