import { type Dispatcher, request } from "undici";
import { errorMessage } from "../../errors.js";
import { retryDelayMs } from "../../http/webhook-retry-schedule.js";
import { webhookHeaders } from "../../http/webhook-signature.js";
import type { Logger } from "../../logger.js";
import type { CallbackOutcome, CallbackStore } from "../../store/callback-store.js";
import type { CallbackRow } from "../../store/schema.js";
import type { TaskChange, TaskStore } from "../../store/task-store.js";
import type { Clock, Timer } from "../clock.js";
import { CallbackRefusedError } from "./guarded-agent.js";
import { maskUrl } from "./mask-url.js";

export interface CallbackSenderOptions {
  clock: Clock;
  /** Its `changes` wake the sender when a status change may have written a delivery. */
  store: TaskStore;
  deliveries: CallbackStore;
  logger: Logger;
  /** Dials only what the address policy allows (guarded-agent.ts). */
  dispatcher: Dispatcher;
  maxTries: number;
  /** The first retry's delay; the Standard Webhooks schedule scales with it (retry-schedule.ts). */
  retryFirstDelayMs: number;
  /** One deadline for a whole try: connecting, sending, the answer's headers and body. */
  timeoutMs: number;
  /** The key of `--callback-secret`; without it deliveries go out unsigned. */
  signingKey: Buffer | undefined;
  /** The gateway's address as receivers reach it, for the `result_url` of `completed`. */
  publicUrl: string;
  /** Deliveries under way at once, each of a different task. */
  concurrency?: number;
  /** Told of every try that did not deliver (not those cut by the shutdown), with why in one word. */
  onTryFailed?: (reason: CallbackFailure) => void;
}

/** Why a try did not deliver: the receiver's answer, no answer in time, or no connection at all. */
export type CallbackFailure = "http_status" | "timeout" | "refused" | "connection";

const DEFAULT_CONCURRENCY = 16;
/** A receiver's answer is read only to free the connection; nobody needs more of it. */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * Delivers the callback rows that status changes wrote in the store: a signed POST of JSON per row
 * (Standard Webhooks), retried on the standard schedule while the receiver is down or answers
 * non-2xx, given up after `maxTries`. Rows survive a restart. A task's rows go out one at a time
 * and in order (CallbackStore.dueCallbacks); different tasks' go out side by side, up to
 * `concurrency`, and each try has one overall deadline, so a receiver that stalls holds up only
 * its own task's callbacks (issue 9). A callback's fate never touches its task.
 */
export class CallbackSender {
  private filling = false;
  /** The pass under way while `filling`; close() waits for it. */
  private fillDone: Promise<void> = Promise.resolve();
  private again = false;
  private timer: Timer | undefined;
  private closed = false;
  /** Ends each try under way with "shutdown"; close() calls them all. */
  private readonly cutters = new Set<() => void>();
  /** Tasks with a try under way: their next row waits for it, whatever the store says is due. */
  private readonly busy = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly concurrency: number;
  // Only a task with a callback_url gets delivery rows (TaskStore.recordStatus); the rest of the
  // changes would cost a query each for nothing, on the intake's hot path.
  private readonly onChange = (change: TaskChange) => {
    if (change.task.callback_url) this.kick();
  };

  constructor(private readonly options: CallbackSenderOptions) {
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  }

  start(): void {
    this.options.store.changes.on("change", this.onChange);
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.options.store.changes.off("change", this.onChange);
    this.timer?.cancel();
    for (const cut of this.cutters) cut();
    while (this.inflight.size > 0 || this.filling)
      await Promise.allSettled([...this.inflight, this.fillDone]);
  }

  /** Something may be due: start what is, up to the concurrency. */
  kick(): void {
    if (this.closed) return;
    if (this.filling) {
      this.again = true;
      return;
    }
    this.filling = true;
    this.fillDone = this.fill()
      .catch((err: unknown) => this.options.logger.error({ err }, "callback pass failed"))
      .finally(() => {
        this.filling = false;
      });
  }

  private async fill(): Promise<void> {
    do {
      this.again = false;
      const free = this.concurrency - this.inflight.size;
      // Every slot taken: the next try to end kicks again. A timer here would find due rows it
      // cannot start and fire at once, over and over.
      if (free <= 0) return;
      const due = await this.options.deliveries.dueCallbacks(free, [...this.busy]);
      for (const row of due) if (!this.closed && !this.busy.has(row.task_id)) this.begin(row);
      if (due.length >= free) this.again = true;
    } while (this.again && !this.closed);
    await this.armTimer();
  }

  private begin(row: CallbackRow): void {
    this.busy.add(row.task_id);
    const run: Promise<void> = this.deliver(row)
      .catch((err: unknown) =>
        this.options.logger.error({ err, task_id: row.task_id, callback_id: row.id }, "callback try failed"),
      )
      .finally(() => {
        this.busy.delete(row.task_id);
        this.inflight.delete(run);
        this.kick();
      });
    this.inflight.add(run);
  }

  /** Sleeps until the next retry is due; a new status change or a finished try kicks earlier. */
  private async armTimer(): Promise<void> {
    this.timer?.cancel();
    const next = await this.options.deliveries.nextCallbackDue([...this.busy]);
    if (!next || this.closed) return;
    const wait = Math.max(0, Date.parse(next) - this.options.clock.now());
    this.timer = this.options.clock.setTimeout(() => this.kick(), wait);
  }

  private async deliver(row: CallbackRow): Promise<void> {
    const { clock, deliveries } = this.options;
    const url = maskUrl(row.url);
    const log = this.options.logger.child({ task_id: row.task_id, callback_id: row.id });
    const tries = row.tries + 1;
    const webhookId = await deliveries.ensureWebhookId(row);
    const started = clock.now();
    const { httpStatus, error, cut } = await this.post(row, webhookId, started);
    const tried = {
      at: new Date(started),
      durationMs: clock.now() - started,
      httpStatus,
      error: error ?? null,
    };
    let outcome: CallbackOutcome;
    if (error !== undefined && cut !== "shutdown") this.options.onTryFailed?.(failureReason(httpStatus, cut));
    if (error === undefined) {
      outcome = { state: "delivered", tries };
      // Routine success: the API's GET /tasks/{id}/callbacks keeps every try (issue 10).
      log.debug({ url, tries, status: httpStatus, webhook_id: webhookId }, "callback delivered");
    } else if (cut === "shutdown" && httpStatus === null) {
      // Not the receiver's fault: the next start tries again at once, and this try does not count.
      outcome = { state: "pending", tries: row.tries, nextAt: new Date(clock.now()), error };
    } else if (cut === "refused" || tries >= this.options.maxTries) {
      outcome = { state: "given_up", tries, error };
      log.warn(
        { url, tries, error },
        cut === "refused" ? "callback refused by the address policy" : "callback given up",
      );
    } else {
      const wait = retryDelayMs(tries, this.options.retryFirstDelayMs);
      outcome = { state: "pending", tries, nextAt: new Date(clock.now() + wait), error };
      log.warn({ url, tries, error, retry_in_ms: wait }, "callback failed; will retry");
    }
    await deliveries.settleCallback(row, outcome, tried);
  }

  /**
   * One try: the signed POST and the answer, under one deadline for the whole exchange. The
   * deadline is a timer of the clock aborting this try's own controller (a signal combined with a
   * long-lived shutdown signal would be kept alive by it, try after try); close() aborts it too.
   */
  private async post(
    row: CallbackRow,
    webhookId: string,
    started: number,
  ): Promise<{ httpStatus: number | null; error?: string; cut?: "deadline" | "shutdown" | "refused" }> {
    const { timeoutMs } = this.options;
    const controller = new AbortController();
    let cut: "deadline" | "shutdown" | undefined;
    const abort = (why: "deadline" | "shutdown") => {
      cut ??= why;
      controller.abort(new Error(why));
    };
    const timer = this.options.clock.setTimeout(() => abort("deadline"), timeoutMs);
    const onClose = () => abort("shutdown");
    this.cutters.add(onClose);
    if (this.closed) onClose();
    const body = this.body(row);
    const target = splitCredentials(row.url);
    let httpStatus: number | null = null;
    try {
      const res = await request(target.url, {
        method: "POST",
        dispatcher: this.options.dispatcher,
        signal: controller.signal,
        headers: {
          "content-type": "application/json",
          "user-agent": "multi-heygem-callback/1",
          ...target.headers,
          ...webhookHeaders(this.options.signingKey, webhookId, Math.floor(started / 1000), body),
        },
        body,
        // Backstops only: the signal is the deadline of the whole exchange.
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      httpStatus = res.statusCode;
      await res.body.dump({ limit: MAX_ANSWER_BYTES });
      // dump() ends quietly when the signal cuts the body off; a cut answer is not an answer.
      controller.signal.throwIfAborted();
      if (httpStatus >= 200 && httpStatus < 300) return { httpStatus };
      return { httpStatus, error: `receiver answered HTTP ${httpStatus}` };
    } catch (err) {
      if (cut === "deadline") {
        return {
          httpStatus,
          cut,
          error: `no complete answer within ${timeoutMs} ms (the delivery's deadline)`,
        };
      }
      if (cut === "shutdown") return { httpStatus, cut, error: "cut off by the gateway shutting down" };
      if (err instanceof CallbackRefusedError) return { httpStatus, cut: "refused", error: err.message };
      return { httpStatus, error: errorMessage(err) };
    } finally {
      timer.cancel();
      this.cutters.delete(onClose);
    }
  }

  /** The stored payload, with `result_url` on `completed` (absolute: the receiver fetches it). */
  private body(row: CallbackRow): string {
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(row.payload) as Record<string, unknown>;
    } catch {
      return row.payload;
    }
    if (payload.status !== "completed") return row.payload;
    return JSON.stringify({
      ...payload,
      result_url: `${this.options.publicUrl}/tasks/${row.task_id}/result`,
    });
  }
}

/**
 * `https://user:pass@host/…` means HTTP Basic authentication to its owner; undici would drop the
 * credentials silently, so they become the Authorization header here.
 */
function splitCredentials(text: string): { url: string; headers: Record<string, string> } {
  const url = new URL(text);
  if (url.username === "" && url.password === "") return { url: text, headers: {} };
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  url.username = "";
  url.password = "";
  const basic = Buffer.from(`${user}:${password}`).toString("base64");
  return { url: url.href, headers: { authorization: `Basic ${basic}` } };
}

function failureReason(httpStatus: number | null, cut: "deadline" | "refused" | undefined): CallbackFailure {
  if (cut === "refused") return "refused";
  if (cut === "deadline") return "timeout";
  return httpStatus === null ? "connection" : "http_status";
}
