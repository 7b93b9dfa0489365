import { randomUUID } from "node:crypto";
import { setImmediate } from "node:timers/promises";
import type { BlobStore } from "../blobs/blob-store.js";
import { ERROR_CODES } from "../error-codes.js";
import { errorMessage, type FailureKind, StoreUnavailableError } from "../errors.js";
import { linkSignals } from "../linked-signal.js";
import { forLog, type Logger } from "../logger.js";
import { FINAL_JOB_STATUSES, type JobView } from "../protocol/schemas.js";
import {
  isWorkerError,
  type WorkerClient,
  WorkerHttpError,
  WorkerUnreachableError,
} from "../protocol/worker-client.js";
import type { AttemptRow, TaskRow } from "../store/schema.js";
import type { TaskStore } from "../store/task-store.js";
import type { VoiceStore } from "../store/voice-store.js";
import { unlessAborted } from "../unless-aborted.js";
import type { BlobPush } from "./blob-push.js";
import { type Clock, delay } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";
import { type JobInputBlob, jobRequest } from "./job-request.js";
import type { MediaInspector } from "./media-inspector.js";
import type { ArrivingResult, ResultRelay } from "./result-relay.js";
import type { SpeedModel } from "./speed-model.js";
import { fetchSpokenAudio, type SpokenAudio } from "./spoken-audio.js";

export interface DispatcherOptions {
  clock: Clock;
  store: TaskStore;
  blobs: BlobStore;
  /** A text task's voice (issue 12): its reference recording goes to the worker like an input. */
  voices: VoiceStore;
  /** Measures a text task's spoken audio once it is home. */
  inspector: MediaInspector;
  fleet: Fleet;
  speeds: SpeedModel;
  logger: Logger;
  maxAttempts: number;
  /** Sent with every job: each worker measures the audio itself and refuses it as the input's fault. */
  maxAudioSeconds: number;
  pollWaitMs: number;
  machineGraceMs: number;
  /** How long to wait between tries while a machine does not answer. */
  retryDelayMs: number;
  /** A slot came free: the scheduler should look for work. */
  onSlotFree: () => void;
  /** The gateway's sends of blobs: a task's big uploads count as a use of its link (blob-push.ts). */
  push: BlobPush;
  /** A POST /tasks/sync waiting on a task reads its result as it comes home (result-relay.ts). */
  relay: ResultRelay;
  /**
   * The dispatching gateway's epoch (issue 13): a claim made after a newer term began is refused
   * by the store. Undefined for a gateway alone on its store (SQLite).
   */
  term?: number | undefined;
}

/** Progress that moves less than this, with the same engine message, is not a step of the log. */
const PROGRESS_STEP = 10;

/** Why an attempt ended without a result. `retry: false` ends the task whatever its kind. */
class AttemptFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly retry = true,
  ) {
    super(message);
  }
}

/** The machine's agent is stopping and took no new job: not a failure of the attempt. */
class JobDeclined extends Error {}

/**
 * The client cancelled the task: the store has already ended the attempt (fencing), so what is
 * left is to stop its job on the worker and give the slot back once the worker has let it go.
 */
class AttemptCancelled extends Error {}

/** One try of a task on one machine, with what every step of it needs. */
interface Attempt {
  readonly task: TaskRow;
  /** Also the job id on the worker. */
  readonly id: string;
  readonly machine: Machine;
  /** The address it started on: a machine moved in machines.json keeps its running attempts. */
  readonly client: WorkerClient;
  readonly signal: AbortSignal;
  readonly log: Logger;
}

interface LiveAttempt {
  readonly taskId: string;
  readonly machine: Machine;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

/**
 * Runs one attempt of a task on one machine through the /v1 protocol: make sure the worker has
 * the inputs, create the job (idempotently, with the attempt id as job id), follow it by
 * long-polling, and bring the result home before the task is marked completed. The same code
 * re-attaches to a job after a gateway restart: `PUT /v1/jobs/{id}` returns the existing job.
 *
 * A text task (issue 12) sends `speech` instead of an audio, its voice's reference recording being
 * one more input; the spoken WAV comes home with the MP4 and both are stored in the transaction
 * that completes the task (job-request.ts, spoken-audio.ts).
 */
export class Dispatcher {
  private readonly live = new Map<string, LiveAttempt>();
  /** Attempts cancelled in the store before they were followed here (the cancel won a race). */
  private readonly cancelledEarly = new Set<string>();
  private readonly shutdown = new AbortController();

  constructor(private readonly options: DispatcherOptions) {}

  /**
   * Places `task` on `machine` if it is still pending and the machine has a free slot; the slot is
   * claimed before any await, so two placements can never both take the last one.
   */
  async dispatch(task: TaskRow, machine: Machine): Promise<boolean> {
    const attemptId = randomUUID();
    const claimed = machine.tryClaim(attemptId, {
      taskId: task.id,
      audioDuration: task.audio_duration,
      startedAt: this.options.clock.now(),
    });
    if (!claimed) return false;
    let started: TaskRow | undefined;
    try {
      started = await this.options.store.startAttempt(task.id, attemptId, machine.name, this.options.term);
    } finally {
      if (!started) machine.release(attemptId);
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
      machine.adopt(attempt.id, {
        taskId: task.id,
        audioDuration: task.audio_duration,
        startedAt: Date.parse(attempt.created_at),
      });
      this.options.logger.info(
        { task_id: task.id, attempt_id: attempt.id, machine: machine.name },
        "re-attaching to attempt after restart",
      );
      this.track(task, attempt.id, machine);
    }
  }

  /** The machine is gone past its grace period: every attempt on it moves on. */
  abandonMachine(machine: Machine, reason: string): void {
    for (const [, attempt] of this.live) {
      if (attempt.machine === machine) attempt.abort.abort(new AttemptFailure("machine", reason));
    }
  }

  /** Ends the task's live attempt (if any) for good, with `message`. Resolves once it has ended. */
  async endTask(taskId: string, message: string): Promise<boolean> {
    for (const [, attempt] of this.live) {
      if (attempt.taskId !== taskId) continue;
      attempt.abort.abort(new AttemptFailure("machine", message, false));
      await attempt.done;
      return true;
    }
    return false;
  }

  /**
   * Stops an attempt the store has already ended as cancelled: its job is cancelled on the worker,
   * and its slot is given back only once the worker's health says whether the engine still holds
   * it (a HeyGem container renders a cancelled task to its end; Machine.busySlots counts it then).
   * Resolves when the attempt has ended here.
   */
  async cancelAttempt(attemptId: string): Promise<void> {
    const attempt = this.live.get(attemptId);
    if (!attempt) {
      this.cancelledEarly.add(attemptId);
      return;
    }
    attempt.abort.abort(new AttemptCancelled(`attempt ${attemptId} cancelled`));
    await attempt.done;
  }

  liveAttemptIds(machine: Machine): ReadonlySet<string> {
    const ids = new Set<string>();
    for (const [id, attempt] of this.live) if (attempt.machine === machine) ids.add(id);
    return ids;
  }

  /** Stops following attempts without changing their state: a restart re-attaches to them. */
  async close(): Promise<void> {
    this.shutdown.abort();
    await Promise.allSettled([...this.live.values()].map((a) => a.done));
  }

  private track(task: TaskRow, attemptId: string, machine: Machine): void {
    const abort = new AbortController();
    const { signal, dispose } = linkSignals([abort.signal, this.shutdown.signal]);
    const log = this.options.logger.child({
      task_id: task.id,
      ...(task.description ? { description: forLog(task.description) } : {}),
      attempt_id: attemptId,
      machine: machine.name,
    });
    const attempt: Attempt = { task, id: attemptId, machine, client: machine.client, signal, log };
    const done = this.run(attempt)
      .catch((err: unknown) => {
        // Once this dispatcher closes, a write the store refused is the next term's to redo: it
        // re-attaches to the attempt. Anything else is a bug, and must not end the gateway.
        if (this.shutdown.signal.aborted) return;
        log.error(
          { err: errorMessage(err) },
          "following the attempt failed; it stays live until a new term re-attaches it",
        );
      })
      .finally(() => {
        dispose();
        this.live.delete(attemptId);
        this.releaseSlot(attemptId, machine);
      });
    this.live.set(attemptId, { taskId: task.id, machine, abort, done });
    if (this.cancelledEarly.delete(attemptId))
      abort.abort(new AttemptCancelled(`attempt ${attemptId} cancelled`));
  }

  private releaseSlot(attemptId: string, machine: Machine): void {
    if (machine.release(attemptId)) this.options.onSlotFree();
  }

  private async run(attempt: Attempt): Promise<void> {
    const { task, id: attemptId, machine, client, signal, log } = attempt;
    const { store } = this.options;
    let arriving: ArrivingResult | undefined;
    try {
      const view = await this.follow(attempt);
      // The engine is done with it: its slot can take the next task while the result comes home.
      this.releaseSlot(attemptId, machine);
      // The scheduler's pass runs first, and the job it starts here is accepted before this result
      // is downloaded, so the engine idles for less (a result a moment later costs nobody a GPU).
      await setImmediate();
      await machine.startsSettled();
      const result = view.result;
      if (!result) throw new AttemptFailure("machine", "the worker reported success without a result");
      arriving = this.options.relay.arriving(task.id, result.bytes, this.options.blobs.path(result.sha256));
      const staged = await this.fetchResult(attemptId, client, result.sha256, signal, arriving);
      arriving?.staged(staged.bytes);
      const stored = { sha256: staged.sha256, bytes: staged.bytes };
      let spoken: SpokenAudio | undefined;
      try {
        spoken = await this.fetchSpoken(attempt, view);
      } catch (err) {
        await staged.discard();
        throw err;
      }
      const runSeconds = engineSeconds(view);
      // Kept in place against a retention sweep deleting the same content meanwhile.
      const done = await this.options.blobs.commitWhile(spoken ? [staged, spoken.staged] : [staged], () =>
        this.whileStoreDown(log, () =>
          store.completeAttempt(task.id, attemptId, stored, runSeconds, spoken?.audio),
        ),
      );
      if (done) {
        arriving?.completed();
        const seconds = spoken?.audio.duration ?? task.audio_duration;
        if (runSeconds !== undefined && seconds > 0) {
          this.options.speeds.observe(machine.name, runSeconds / seconds);
        }
        log.info({ bytes: stored.bytes, run_seconds: runSeconds }, "task completed");
      } else {
        arriving?.failed(new Error("the attempt is no longer current"));
        log.warn("attempt is no longer current; its result is ignored");
      }
      // The result is safe here now; free the worker's disk.
      await client.cancelJob(attemptId).catch(() => undefined);
    } catch (err) {
      arriving?.failed(new Error(`the result was not kept: ${errorMessage(err)}`));
      if (this.shutdown.signal.aborted) return;
      if (err instanceof JobDeclined && !signal.aborted) {
        this.options.fleet.reportAgentDraining(machine);
        log.info(err.message);
        await this.whileStoreDown(log, () => store.withdrawAttempt(task.id, attemptId, err.message));
        return;
      }
      const reason: unknown = signal.aborted ? signal.reason : err;
      if (reason instanceof AttemptCancelled) {
        log.info("task cancelled; cancelling its job on the machine");
        await client
          .cancelJob(attemptId)
          .catch((cancelErr: unknown) =>
            log.warn({ err: errorMessage(cancelErr) }, "could not cancel the job; the health probe will"),
          );
        // The slot is released (in track) only after this: until then the worker may not yet
        // report the HeyGem render that outlives the job among its held slots.
        await this.options.fleet.refresh(machine);
        return;
      }
      const failure =
        reason instanceof AttemptFailure
          ? reason
          : new AttemptFailure("machine", `dispatch failed: ${errorMessage(reason)}`);
      const current = await this.whileStoreDown(log, () => store.getTask(task.id));
      const retry =
        failure.retry && failure.kind === "machine" && (current?.attempts ?? 0) < this.options.maxAttempts;
      const message =
        failure.retry && failure.kind === "machine" && !retry
          ? `gave up after ${current?.attempts ?? 0} attempts; last: ${failure.message}`
          : failure.message;
      log.warn({ kind: failure.kind, retry }, `attempt failed: ${failure.message}`);
      const after = await this.whileStoreDown(log, () =>
        store.failAttempt(task.id, attemptId, { kind: failure.kind, message, retry }),
      );
      // Whatever the worker still holds for this attempt is of no use now.
      await client.cancelJob(attemptId).catch(() => undefined);
      // A result that failed on its way home had given its slot back already, and that release
      // woke the placement when the task was not pending yet: nothing else may come to wake it.
      if (after?.status === "pending") this.options.onSlotFree();
    }
  }

  /** Creates (or re-attaches to) the job and follows it until it is final. */
  private async follow(attempt: Attempt): Promise<JobView> {
    const { task, id: attemptId, machine, client, signal, log } = attempt;
    const { store } = this.options;
    let view = await this.withGrace(attempt, () => machine.starting(() => this.createJob(attempt)));
    await this.whileStoreDown(log, () => store.markAttemptRunning(attemptId));
    log.debug({ status: view.status }, "job accepted by worker");
    let logged: { progress: number; message: string | undefined } = { progress: 0, message: undefined };
    for (;;) {
      // The final state has an event of its own; a progress row for it would only repeat it.
      if (FINAL_JOB_STATUSES.has(view.status)) break;
      const step = view.message !== logged.message || view.progress - logged.progress >= PROGRESS_STEP;
      if (step || view.progress !== logged.progress) {
        await this.whileStoreDown(log, () =>
          store.recordProgress(task.id, attemptId, view.progress, view.message, step),
        );
        if (step) logged = { progress: view.progress, message: view.message };
      }
      const after = view.version;
      const next = await this.withGrace(attempt, () =>
        client.getJob(attemptId, { waitMs: this.options.pollWaitMs, afterVersion: after, signal }),
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

  private async createJob(attempt: Attempt): Promise<JobView> {
    const { task, id: attemptId, machine, client, signal, log } = attempt;
    const voiceId = task.voice_id;
    const voice =
      voiceId === null ? undefined : await this.whileStoreDown(log, () => this.options.voices.get(voiceId));
    // DELETE /voices refuses while a live task speaks in it; a task retried after is left without.
    if (task.voice_id !== null && !voice)
      throw new AttemptFailure("input", `voice ${task.voice_id} was deleted; create the task again`, false);
    const { body, inputs } = jobRequest(task, voice, this.options.maxAudioSeconds);
    const send = (ref: JobInputBlob, ask: boolean) =>
      // Tasks that share a template and start together on one machine send it there once.
      machine.uploadOnce(ref.sha256, async () => {
        if (ask && (await client.hasBlob(ref.sha256, signal))) return;
        log.debug({ sha256: ref.sha256, bytes: ref.bytes }, `uploading ${ref.field} to worker`);
        const { clock } = this.options;
        // Counted as a use of the gateway's link: no send ahead starts meanwhile (blob-push.ts).
        await this.options.push.forTask(ref.bytes, async () => {
          const started = clock.now();
          await client.putBlob(ref.sha256, this.options.blobs.path(ref.sha256), ref.bytes, signal);
          machine.observeUpload(ref.bytes, clock.now() - started);
        });
      });
    // A task's own audio came with it, so no machine has it yet unless it was sent ahead while
    // the task waited (input-prefetch.ts): sent first, it spares the job's refusal (409
    // BLOB_MISSING) and the question that would follow, two round trips per task.
    for (const ref of inputs)
      if (ref.field === "audio" && !machine.hasBlob(ref.sha256)) await send(ref, false);
    // An input on its way there already (sent ahead while the slot was busy) is
    // awaited: asked for before it lands, the job would only be refused for it. Should that send
    // fail, the job's refusal below names what is missing, and it is sent then.
    for (const ref of inputs) {
      const underWay = machine.uploadUnderWay(ref.sha256);
      if (underWay)
        await unlessAborted(
          underWay.catch(() => undefined),
          signal,
        );
    }
    for (let tries = 0; ; tries++) {
      let missing: string | undefined;
      try {
        const view = await client.putJob(attemptId, body, signal);
        for (const ref of inputs) machine.knowBlob(ref.sha256);
        return view;
      } catch (err) {
        if (!isWorkerError(err, ERROR_CODES.BLOB_MISSING) || tries >= 2) throw err;
        missing = err.field;
      }
      // Upload only what the worker lacks: the same avatar video (or voice) serves thousands of
      // tasks. The refusal names the first input missing; the others are asked about, unless this
      // gateway has sent them there (a belief the next refusal corrects if the worker evicted one).
      for (const ref of inputs) {
        if (ref.field === missing) await send(ref, false);
        else if (!machine.hasBlob(ref.sha256)) await send(ref, true);
      }
    }
  }

  /** A text task's spoken audio (issue 12); undefined for a task that uploaded its audio. */
  private async fetchSpoken(attempt: Attempt, view: JobView): Promise<SpokenAudio | undefined> {
    if (attempt.task.speech === null) return undefined;
    const expected = view.speech_audio;
    if (!expected)
      throw new AttemptFailure("machine", "the worker reported success without the spoken audio of the text");
    const { client, signal, id } = attempt;
    return fetchSpokenAudio(
      { client, blobs: this.options.blobs, inspector: this.options.inspector },
      id,
      expected,
      signal,
      (reason) => new AttemptFailure("machine", reason),
    );
  }

  private async fetchResult(
    attemptId: string,
    client: WorkerClient,
    sha256: string,
    signal: AbortSignal,
    arriving: ArrivingResult | undefined,
  ) {
    const body = await client.result(attemptId, signal);
    return this.options.blobs.stage(body, {
      expectedSha256: sha256,
      signal,
      ...(arriving ? { onData: (path: string) => arriving.arrived(path) } : {}),
      onMismatch: (actual) =>
        new AttemptFailure("machine", `result arrived damaged (sha256 ${actual}, expected ${sha256})`),
    });
  }

  /**
   * Runs a read or write of the store for an attempt, again every `retryDelayMs` while the store
   * cannot be reached (STORE_UNAVAILABLE: its database connection lost, its data dir gone
   * read-only). That is neither the machine's fault nor the task's: the job goes on, and a render
   * that finished must not be thrown away for it. Once this dispatcher closes it throws instead;
   * the attempt is still live in the store then, and the next term re-attaches to it.
   */
  private async whileStoreDown<T>(log: Logger, call: () => Promise<T>): Promise<T> {
    let waiting = false;
    for (;;) {
      try {
        const value = await call();
        if (waiting) log.info("the store answers again");
        return value;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || this.shutdown.signal.aborted) throw err;
        if (!waiting) log.warn({ err: err.message }, "the store cannot be reached; the attempt waits for it");
        waiting = true;
        await delay(this.options.clock, this.options.retryDelayMs, this.shutdown.signal);
      }
    }
  }

  /**
   * Retries `call` while the machine cannot be reached, for at most `machineGraceMs`: a worker
   * that restarts or a network blip must not cost a running task. Past the grace, the attempt
   * is the machine's failure and the task moves on.
   */
  private async withGrace<T>(attempt: Attempt, call: () => Promise<T>): Promise<T> {
    const { machine, signal, log } = attempt;
    const { clock } = this.options;
    let since: number | undefined;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (signal.aborted) throw err;
        if (isWorkerError(err, ERROR_CODES.WORKER_DRAINING)) {
          throw new JobDeclined(`machine ${machine.name} is stopping (its agent drains) and took no new job`);
        }
        const started = clock.now();
        since ??= started;
        const transient =
          err instanceof WorkerUnreachableError || (err instanceof WorkerHttpError && err.status >= 500);
        if (!transient) {
          if (err instanceof WorkerHttpError)
            throw new AttemptFailure(err.kind, `worker refused: ${err.message}`);
          throw err;
        }
        if (clock.now() - since >= this.options.machineGraceMs) {
          this.options.fleet.reportUnreachable(machine, errorMessage(err));
          throw new AttemptFailure("machine", `machine ${machine.name} unreachable: ${errorMessage(err)}`);
        }
        // Once per outage of this attempt, not once per retry: the fleet logs the machine's own
        // change of state, and a line a second per task would bury it (issue 10).
        if (since === started) log.warn({ err: errorMessage(err) }, "worker not answering; trying again");
        else log.debug({ err: errorMessage(err) }, "worker still not answering");
        await delay(clock, this.options.retryDelayMs, signal);
      }
    }
  }
}

/** The engine's own run time, as the worker measured it (queueing and transfers excluded). */
function engineSeconds(view: JobView): number | undefined {
  if (!view.started_at || !view.finished_at) return undefined;
  const seconds = (Date.parse(view.finished_at) - Date.parse(view.started_at)) / 1000;
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}
