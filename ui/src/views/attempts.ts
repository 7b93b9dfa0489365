import type { TaskEventRow } from "../../../src/client/index.js";

export interface Attempt {
  attemptId: string;
  machine: string | null;
  dispatchedAt: string;
  /** The event that ended it (completed, failed, requeued…); undefined while it runs. */
  end: TaskEventRow | undefined;
}

/**
 * A task's attempts, from its events: each `dispatched` names its machine and attempt, and the
 * next event with the same attempt that leaves `processing` ends it.
 */
export function attemptsOf(events: readonly TaskEventRow[]): Attempt[] {
  const attempts: Attempt[] = [];
  for (const event of events) {
    if (event.attempt_id === null) continue;
    let attempt = attempts.find((a) => a.attemptId === event.attempt_id);
    if (!attempt) {
      attempt = {
        attemptId: event.attempt_id,
        machine: event.machine,
        dispatchedAt: event.at,
        end: undefined,
      };
      attempts.push(attempt);
    }
    if (event.type !== "dispatched" && event.type !== "progress" && event.from_status !== event.to_status)
      attempt.end = event;
  }
  return attempts;
}
