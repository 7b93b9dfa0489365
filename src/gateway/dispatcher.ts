import { randomUUID } from "node:crypto";
import type { BlobStore } from "../blobs/blob-store.js";
import { errorMessage, type FailureKind } from "../errors.js";
import type { Logger } from "../logger.js";
import { FINAL_JOB_STATUSES, type JobOptions, type JobView } from "../protocol/schemas.js";
import { WorkerHttpError, WorkerUnreachableError } from "../protocol/worker-client.js";
import type { AttemptRow, TaskRow } from "../store/schema.js";
import type { TaskStore } from "../store/task-store.js";
import type { Fleet, Machine } from "./fleet.js";

export interface DispatcherOptions {
  store: TaskStore;
  blobs: BlobStore;
  fleet: Fleet;
  logger: Logger;
  maxAttempts: number;
  pollWaitMs: number;
  machineGraceMs: number;
  /** How long to wait between tries while a machine does not answer. */
  retryDelayMs: number;
  /** A slot came free: the scheduler should look for work. */
  onSlotFree: () => void;
}

/** Why an attempt ended without a result. */
class AttemptFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Runs one attempt of a task on one machine through the /v1 protocol: make sure the worker has
 * both inputs, create the job (idempotently, with the attempt id as job id), follow it by
 * long-polling, and bring the result home before the task is marked completed. The same code
 * re-attaches to a job after a gateway restart: `PUT /v1/jobs/{id}` returns the existing job.
 */
export class Dispatcher {
  private readonly live = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly options: DispatcherOptions) {}

  /** Places `task` on `machine` if it is still pending; the slot is claimed before any await. */
  async dispatch(task: TaskRow, machine: Machine): Promise<boolean> {
    const attemptId = randomUUID();
    machine.running.add(attemptId);
    let started: TaskRow | undefined;
    try {
      started = await this.options.store.startAttempt(task.id, attemptId, machine.name);
    } finally {
      if (!started) machine.running.delete(attemptId);
    }
    if (!started) return false;
    this.track(started, attemptId, machine);
    return true;
  }

  /** After a restart: follow the attempts that were live when the gateway stopped. */
  async resume(attempts: AttemptRow[]): Promise<void> {
    for (const attempt of attempts) {
      const task = await this.options.store.getTask(attempt.task_id);
      if (!task || task.current_attempt !== attempt.id) continue;
      const machine = this.options.fleet.get(attempt.machine);
      if (!machine) {
        await this.options.store.failAttempt(task.id, attempt.id, {
          kind: "machine",
          message: `machine ${attempt.machine} is no longer configured`,
          retry: task.attempts < this.options.maxAttempts,
        });
        continue;
      }
      machine.running.add(attempt.id);
      this.options.logger.info(
        { task_id: task.id, attempt_id: attempt.id, machine: machine.name },
        "re-attaching to attempt after restart",
      );
      this.track(task, attempt.id, machine);
    }
  }

  /** Stops following attempts without changing their state: a restart re-attaches to them. */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.live.values());
  }

  private track(task: TaskRow, attemptId: string, machine: Machine): void {
    const run = this.run(task, attemptId, machine).finally(() => {
      this.live.delete(attemptId);
      machine.running.delete(attemptId);
      this.options.onSlotFree();
    });
    this.live.set(attemptId, run);
  }

  private async run(task: TaskRow, attemptId: string, machine: Machine): Promise<void> {
    const log = this.options.logger.child({ task_id: task.id, attempt_id: attemptId, machine: machine.name });
    const { store } = this.options;
    try {
      const view = await this.follow(task, attemptId, machine, log);
      if (this.abort.signal.aborted) return;
      const result = view.result;
      if (!result) throw new AttemptFailure("machine", "the worker reported success without a result");
      const stored = await this.fetchResult(attemptId, machine, result.sha256);
      const done = await store.completeAttempt(task.id, attemptId, stored);
      if (done) log.info({ bytes: stored.bytes }, "task completed");
      else log.warn("attempt is no longer current; its result is ignored");
      // The result is safe here now; free the worker's disk.
      await machine.client.cancelJob(attemptId).catch(() => undefined);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      const failure =
        err instanceof AttemptFailure
          ? err
          : new AttemptFailure("machine", `dispatch failed: ${errorMessage(err)}`);
      const current = await store.getTask(task.id);
      const retry = failure.kind === "machine" && (current?.attempts ?? 0) < this.options.maxAttempts;
      const message =
        failure.kind === "machine" && !retry
          ? `gave up after ${current?.attempts ?? 0} attempts; last: ${failure.message}`
          : failure.message;
      log.warn({ kind: failure.kind, retry }, `attempt failed: ${failure.message}`);
      await store.failAttempt(task.id, attemptId, { kind: failure.kind, message, retry });
      if (failure.kind === "machine") {
        await machine.client.cancelJob(attemptId).catch(() => undefined);
      }
    }
  }

  /** Creates (or re-attaches to) the job and follows it until it is final. */
  private async follow(task: TaskRow, attemptId: string, machine: Machine, log: Logger): Promise<JobView> {
    const { store } = this.options;
    let view = await this.withGrace(machine, log, () => this.createJob(task, attemptId, machine, log));
    await store.markAttemptRunning(attemptId);
    log.info({ status: view.status }, "job accepted by worker");
    for (;;) {
      await store.recordProgress(task.id, attemptId, view.progress, view.message);
      if (FINAL_JOB_STATUSES.has(view.status)) break;
      const after = view.version;
      const next = await this.withGrace(machine, log, () =>
        machine.client.getJob(attemptId, {
          waitMs: this.options.pollWaitMs,
          afterVersion: after,
          signal: this.abort.signal,
        }),
      );
      if (!next)
        throw new AttemptFailure("machine", `machine ${machine.name} no longer knows this job (lost)`);
      view = next;
    }
    if (view.status === "succeeded") return view;
    if (view.status === "cancelled")
      throw new AttemptFailure("machine", "the job was cancelled on the worker");
    throw new AttemptFailure(view.error?.kind ?? "machine", view.error?.message ?? "the engine failed");
  }

  private async createJob(task: TaskRow, attemptId: string, machine: Machine, log: Logger): Promise<JobView> {
    const body = {
      audio: { sha256: task.audio_sha256, bytes: task.audio_bytes, name: task.audio_name },
      video: { sha256: task.video_sha256, bytes: task.video_bytes, name: task.video_name },
      options: JSON.parse(task.options) as JobOptions,
      audio_duration: task.audio_duration,
    };
    const signal = this.abort.signal;
    for (let tries = 0; ; tries++) {
      try {
        return await machine.client.putJob(attemptId, body, signal);
      } catch (err) {
        if (!(err instanceof WorkerHttpError && err.code === "BLOB_MISSING") || tries >= 2) throw err;
      }
      // Upload only what the worker lacks: the same avatar video serves thousands of tasks.
      for (const ref of [body.video, body.audio]) {
        if (await machine.client.hasBlob(ref.sha256, signal)) continue;
        log.info({ sha256: ref.sha256, bytes: ref.bytes }, `uploading ${ref.name} to worker`);
        await machine.client.putBlob(ref.sha256, this.options.blobs.path(ref.sha256), ref.bytes, signal);
      }
    }
  }

  private async fetchResult(attemptId: string, machine: Machine, sha256: string) {
    const body = await machine.client.result(attemptId, this.abort.signal);
    return this.options.blobs.put(body, {
      expectedSha256: sha256,
      signal: this.abort.signal,
      onMismatch: (actual) =>
        new AttemptFailure("machine", `result arrived damaged (sha256 ${actual}, expected ${sha256})`),
    });
  }

  /**
   * Retries `call` while the machine cannot be reached, for at most `machineGraceMs`: a worker
   * that restarts or a network blip must not cost a running task. Past the grace, the attempt
   * is the machine's failure and the task moves on.
   */
  private async withGrace<T>(machine: Machine, log: Logger, call: () => Promise<T>): Promise<T> {
    const since = Date.now();
    for (;;) {
      try {
        return await call();
      } catch (err) {
        const transient =
          err instanceof WorkerUnreachableError || (err instanceof WorkerHttpError && err.status >= 500);
        if (this.abort.signal.aborted || !transient) {
          if (err instanceof WorkerHttpError)
            throw new AttemptFailure("machine", `worker refused: ${err.message}`);
          throw err;
        }
        if (Date.now() - since >= this.options.machineGraceMs) {
          this.options.fleet.reportUnreachable(machine, errorMessage(err));
          throw new AttemptFailure("machine", `machine ${machine.name} unreachable: ${errorMessage(err)}`);
        }
        log.warn({ err: errorMessage(err) }, "worker not answering; trying again");
        await delay(this.options.retryDelayMs, this.abort.signal);
      }
    }
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
