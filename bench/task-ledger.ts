import { Client } from "../src/client/client.js";

/** How one task ended. */
export interface TaskEnd {
  readonly status: string;
  readonly attempts: number;
  readonly error: string | null;
}

const FINAL = new Set(["completed", "failed", "cancelled"]);

/**
 * Every task's end as the gateway's event stream (GET /tasks/stream) tells it, on one connection
 * resumed after a break. For runs whose task rows are deleted soon after the task ends
 * (--retention-rows), so that asking for each task afterwards would find nothing.
 */
export class TaskLedger {
  readonly ends = new Map<string, TaskEnd>();
  completed = 0;
  /** `reset` messages: the stream was away too long and events were missed. */
  resets = 0;
  private readonly stop = new AbortController();
  private readonly following: Promise<void>;

  constructor(gateway: string) {
    const client = new Client({ url: gateway });
    this.following = (async () => {
      try {
        for await (const message of client.follow({ signal: this.stop.signal })) {
          if (message.type === "reset") this.resets++;
          if (message.type !== "task" || !FINAL.has(message.task.status)) continue;
          const { task } = message;
          if (task.status === "completed" && this.ends.get(task.task_id)?.status !== "completed")
            this.completed++;
          this.ends.set(task.task_id, {
            status: task.status,
            attempts: task.attempts,
            error: task.error_message,
          });
        }
      } catch (err) {
        if (!this.stop.signal.aborted) throw err;
      }
    })();
  }

  get ended(): number {
    return this.ends.size;
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.following;
  }
}
