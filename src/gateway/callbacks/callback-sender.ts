import { request } from "undici";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { CallbackStore } from "../store/callback-store.js";
import type { CallbackRow } from "../store/schema.js";
import type { TaskChange, TaskStore } from "../store/task-store.js";
import type { Clock, Timer } from "./clock.js";

export interface CallbackSenderOptions {
  clock: Clock;
  /** Its `changes` wake the sender when a status change may have written a delivery. */
  store: TaskStore;
  deliveries: CallbackStore;
  logger: Logger;
  maxTries: number;
  retryBaseMs: number;
  timeoutMs: number;
}

const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Delivers the callback rows that status changes wrote in the store: a POST of JSON per row,
 * retried with exponential backoff while the receiver is down or answers non-2xx, given up after
 * `maxTries`. Rows survive a restart, and a task's rows go out in order (TaskStore.dueCallbacks).
 * A callback's fate never touches its task.
 */
export class CallbackSender {
  private busy = false;
  private again = false;
  private timer: Timer | undefined;
  private closed = false;
  private readonly inflight = new Set<Promise<void>>();
  // Only a task with a callback_url gets delivery rows (TaskStore.recordStatus); the rest of the
  // changes would cost two queries each for nothing, on the intake's hot path.
  private readonly onChange = (change: TaskChange) => {
    if (change.task.callback_url) this.kick();
  };

  constructor(private readonly options: CallbackSenderOptions) {}

  start(): void {
    this.options.store.changes.on("change", this.onChange);
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.options.store.changes.off("change", this.onChange);
    this.timer?.cancel();
    await Promise.allSettled(this.inflight);
  }

  kick(): void {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    const pass = this.drain()
      .catch((err: unknown) => this.options.logger.error({ err }, "callback pass failed"))
      .finally(() => {
        this.busy = false;
        this.inflight.delete(pass);
      });
    this.inflight.add(pass);
  }

  private async drain(): Promise<void> {
    do {
      this.again = false;
      const due = await this.options.deliveries.dueCallbacks(32);
      await Promise.all(due.map((row) => this.deliver(row)));
      if (due.length > 0) this.again = true;
    } while (this.again && !this.closed);
    await this.armTimer();
  }

  /** Sleeps until the next retry is due; a new status change kicks earlier. */
  private async armTimer(): Promise<void> {
    this.timer?.cancel();
    const next = await this.options.deliveries.nextCallbackDue();
    if (!next || this.closed) return;
    const wait = Math.max(0, Date.parse(next) - this.options.clock.now());
    this.timer = this.options.clock.setTimeout(() => this.kick(), wait);
  }

  private async deliver(row: CallbackRow): Promise<void> {
    const log = this.options.logger.child({ task_id: row.task_id, callback_id: row.id });
    const tries = row.tries + 1;
    let error: string;
    try {
      const res = await request(row.url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "multi-heygem-callback/1" },
        body: row.payload,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await this.options.deliveries.settleCallback(row.id, { state: "delivered", tries });
        log.info({ url: row.url, tries, status: res.statusCode }, "callback delivered");
        return;
      }
      error = `receiver answered HTTP ${res.statusCode}`;
    } catch (err) {
      error = errorMessage(err);
    }
    if (tries >= this.options.maxTries) {
      await this.options.deliveries.settleCallback(row.id, { state: "given_up", tries, error });
      log.warn({ url: row.url, tries, error }, "callback given up");
      return;
    }
    const backoff = Math.min(MAX_BACKOFF_MS, this.options.retryBaseMs * 2 ** (tries - 1));
    await this.options.deliveries.settleCallback(row.id, {
      state: "pending",
      tries,
      nextAt: new Date(this.options.clock.now() + backoff),
      error,
    });
    log.warn({ url: row.url, tries, error, retry_in_ms: backoff }, "callback failed; will retry");
  }
}
