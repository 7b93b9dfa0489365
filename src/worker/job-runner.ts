import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { BlobStore } from "../blobs/blob-store.js";
import { AgentStoppingError, type Engine, type ResumeState } from "../engines/engine.js";
import {
  AppError,
  ConflictError,
  EngineError,
  errorMessage,
  type FailureKind,
  InputError,
  NotFoundError,
} from "../errors.js";
import type { Logger } from "../logger.js";
import {
  DEFAULT_JOB_OPTIONS,
  FINAL_JOB_STATUSES,
  type JobView,
  type PutJobBody,
} from "../protocol/schemas.js";
import { type JobResult, runEngine } from "./engine-run.js";
import type { JobJournal } from "./job-journal.js";
import {
  failRecord,
  type JobInput,
  type JobRecord,
  type JobRecords,
  recoverRecord,
  sameInput,
} from "./job-records.js";
import type { WorkerLayout } from "./layout.js";

export const DEFAULT_RESULT_RETENTION_MS = 24 * 60 * 60 * 1000;
export const STOPPED_WHILE_RUNNING = "the worker agent was stopped while this job was running";

export interface JobRunnerOptions {
  readonly engine: Engine;
  readonly blobs: BlobStore;
  readonly records: JobRecords;
  readonly layout: WorkerLayout;
  readonly logger: Logger;
  /** Finished jobs and their results are forgotten this long after they finish. */
  readonly resultRetentionMs?: number;
  /** Where every job's accepted/started/finished/deleted goes, for audits after the records are gone. */
  readonly journal?: JobJournal;
  readonly now?: () => Date;
}

interface Job {
  record: JobRecord;
  readonly log: Logger;
  /** Long-polls parked on this job; each is called once on the next change. */
  readonly waiters: Set<() => void>;
  abort?: AbortController;
  /** Settles when the engine run (and the bookkeeping after it) is over. */
  run?: Promise<void>;
  cancelRequested?: boolean;
  deleting?: Promise<JobView> | undefined;
}

type Outcome =
  | { status: "succeeded"; result: JobResult }
  | { status: "failed"; error: { kind: FailureKind; message: string } }
  | { status: "cancelled" }
  /** The agent stops: the record stays as it is (queued, or running to be resumed) for the next start. */
  | { status: "suspended" };

function failed(kind: FailureKind, message: string): Outcome {
  return { status: "failed", error: { kind, message } };
}

/**
 * The worker's queue in front of its engine: accepted jobs wait `queued` (FIFO) until one of the
 * engine's `capacity` slots is free, then run to `succeeded`, `failed` or `cancelled`. Every change
 * bumps the job's `version`, is written to its record and wakes its long-polls. An engine with
 * `startsWhenAccepted` holds a slot while its backend has not taken the job yet; the job shows
 * `queued` until the engine says it is accepted.
 */
export class JobRunner {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: string[] = [];
  /** Jobs that hold one of the engine's slots (some may still be `queued`: startsWhenAccepted). */
  private readonly running = new Set<string>();
  /** Jobs found `running` at start-up that the engine will resume; they take slots first. */
  private readonly resuming: string[] = [];
  private readonly capacity: number;
  private readonly retentionMs: number;
  private readonly now: () => Date;
  private nextSeq = 0;
  private closing = false;
  private sweeper: NodeJS.Timeout | undefined;

  private constructor(private readonly o: JobRunnerOptions) {
    this.capacity = Math.max(1, Math.floor(o.engine.capacity));
    this.retentionMs = o.resultRetentionMs ?? DEFAULT_RESULT_RETENTION_MS;
    this.now = o.now ?? (() => new Date());
  }

  /** Loads the records left by an earlier run, settles them (job-records.ts), and starts work. */
  static async start(options: JobRunnerOptions): Promise<JobRunner> {
    const runner = new JobRunner(options);
    await runner.recover();
    runner.sweep();
    // Often enough that a result outlives its retention by at most a tenth of it.
    const every = Math.min(Math.max(runner.retentionMs / 10, 100), 10 * 60 * 1000);
    runner.sweeper = setInterval(() => runner.sweep(), every);
    runner.sweeper.unref();
    runner.pump();
    return runner;
  }

  get runningIds(): string[] {
    return [...this.running].filter((id) => this.jobs.get(id)?.record.view.status === "running");
  }

  get queuedIds(): string[] {
    const waitingForEngine = [...this.running].filter(
      (id) => this.jobs.get(id)?.record.view.status === "queued",
    );
    return [...waitingForEngine, ...this.queue];
  }

  /** Long-polls currently parked, across all jobs. */
  get waiting(): number {
    let n = 0;
    for (const job of this.jobs.values()) n += job.waiters.size;
    return n;
  }

  view(id: string): JobView {
    return this.get(id).record.view;
  }

  /**
   * Accepts a job, or answers with the existing one when the id is known with the same inputs:
   * a gateway that restarted re-attaches instead of running the job twice.
   */
  async submit(id: string, body: PutJobBody): Promise<{ view: JobView; created: boolean }> {
    const input: JobInput = {
      audio: body.audio,
      video: body.video,
      options: { ...DEFAULT_JOB_OPTIONS, ...body.options },
      ...(body.audio_duration === undefined ? {} : { audio_duration: body.audio_duration }),
      ...(body.max_audio_seconds === undefined ? {} : { max_audio_seconds: body.max_audio_seconds }),
    };
    const existing = this.existing(id, input);
    if (existing) return { view: existing, created: false };
    if (this.closing) throw shuttingDown();
    for (const field of ["audio", "video"] as const) {
      const ref = input[field];
      if (!(await this.o.blobs.has(ref.sha256))) {
        throw new InputError(
          "BLOB_MISSING",
          `upload the ${field} blob ${ref.sha256} before the job`,
          field,
          409,
        );
      }
    }
    // Another PUT for this id may have won the race while the blobs were checked.
    const raced = this.existing(id, input);
    if (raced) return { view: raced, created: false };
    if (this.closing) throw shuttingDown();

    const record: JobRecord = {
      seq: this.nextSeq++,
      input,
      view: { id, status: "queued", progress: 0, created_at: this.now().toISOString(), version: 0 },
    };
    const job = this.add(record);
    try {
      await this.o.records.save(record);
    } catch (err) {
      this.jobs.delete(id);
      throw err;
    }
    job.log.info(
      { audio: input.audio.sha256, video: input.video.sha256, options: input.options },
      "job accepted",
    );
    this.o.journal?.write(id, "accepted");
    this.queue.push(id);
    this.pump();
    return { view: job.record.view, created: true };
  }

  /**
   * Answers at once unless `afterVersion` is the job's current version, in which case it waits up
   * to `waitMs` for the next change. Ends early when `signal` aborts (the client went away).
   */
  async waitForChange(
    id: string,
    afterVersion: number | undefined,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<JobView> {
    const job = this.get(id);
    if (afterVersion !== job.record.view.version || waitMs <= 0 || this.closing || signal.aborted) {
      return job.record.view;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        job.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      signal.addEventListener("abort", done, { once: true });
      job.waiters.add(done);
    });
    return job.record.view;
  }

  /** Path of a succeeded job's MP4. */
  resultPath(id: string): string {
    const { status } = this.get(id).record.view;
    if (status !== "succeeded") {
      throw new ConflictError(
        "JOB_NOT_FINISHED",
        `job ${id} is ${status}; a result exists once it has succeeded`,
      );
    }
    return this.o.layout.resultPath(id);
  }

  /**
   * Cancels a queued or running job (the engine sees its signal abort) and forgets any job with
   * its files. Answers with the job's last view.
   */
  delete(id: string): Promise<JobView> {
    const job = this.get(id);
    job.deleting ??= this.deleteJob(job).catch((err: unknown) => {
      // Let a later DELETE (or sweep) try again rather than repeat this failure forever.
      job.deleting = undefined;
      throw err;
    });
    return job.deleting;
  }

  /**
   * Stops taking work and aborts running jobs, which are recorded as failed (kind `machine`) so
   * that a later start reports them honestly. Queued jobs stay queued on disk for the next start.
   */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    for (const job of this.jobs.values()) this.notify(job);
    for (const id of this.running) {
      this.jobs.get(id)?.abort?.abort(new AgentStoppingError(STOPPED_WHILE_RUNNING));
    }
    await Promise.all([...this.jobs.values()].map((job) => job.run));
    await this.o.records.flush();
  }

  private async recover(): Promise<void> {
    const { layout } = this.o;
    await Promise.all([layout.work, layout.results].map((dir) => mkdir(dir, { recursive: true })));
    // Nothing runs yet, so every work dir is a leftover of a run that died with its process.
    for (const name of await readdir(layout.work)) {
      await rm(join(layout.work, name), { recursive: true, force: true });
    }

    const now = this.now();
    const canResume = this.o.engine.resume !== undefined;
    for (const loaded of await this.o.records.loadAll()) {
      let record = recoverRecord(loaded, now, canResume);
      if (record.view.status === "succeeded" && !(await exists(layout.resultPath(record.view.id)))) {
        record = failRecord(record, now, "the result file of this job is gone from the worker's disk");
      }
      if (record !== loaded) await this.o.records.save(record);
      const job = this.add(record);
      this.nextSeq = Math.max(this.nextSeq, record.seq + 1);
      if (record.view.status === "queued") this.queue.push(record.view.id);
      if (record.view.status === "running") {
        this.resuming.push(record.view.id);
        job.log.info({ resume: record.resume }, "job was running before the restart; resuming it");
      }
      if (loaded.view.status !== record.view.status) {
        if (loaded.view.status === "running")
          this.o.journal?.write(record.view.id, "finished", record.view.status);
        job.log.warn({ was: loaded.view.status, error: record.view.error }, "job settled after a restart");
      }
    }
    for (const name of await readdir(layout.results)) {
      const id = name.replace(/\.mp4$/, "");
      if (!this.jobs.has(id)) await rm(join(layout.results, name), { force: true });
    }
  }

  private existing(id: string, input: JobInput): JobView | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (job.deleting) throw new ConflictError("JOB_CONFLICT", `job ${id} is being deleted; use a new id`);
    if (!sameInput(job.record.input, input)) {
      throw new ConflictError("JOB_CONFLICT", `job ${id} already exists with other inputs`);
    }
    return job.record.view;
  }

  private add(record: JobRecord): Job {
    const job: Job = { record, log: this.o.logger.child({ job_id: record.view.id }), waiters: new Set() };
    this.jobs.set(record.view.id, job);
    return job;
  }

  private get(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new NotFoundError(`no job ${id} on this worker`);
    return job;
  }

  private pump(): void {
    while (!this.closing && this.running.size < this.capacity) {
      const resumeId = this.resuming.shift();
      const id = resumeId ?? this.queue.shift();
      if (id === undefined) return;
      const job = this.jobs.get(id);
      if (!job) continue;
      this.running.add(id);
      job.abort = new AbortController();
      const resume = resumeId === undefined ? undefined : job.record.resume;
      job.run = this.execute(job, job.abort.signal, resume)
        .catch((err: unknown) => job.log.error({ err }, "job bookkeeping failed"))
        .finally(() => {
          this.running.delete(id);
          this.pump();
        });
    }
  }

  private async execute(job: Job, signal: AbortSignal, resume?: ResumeState): Promise<void> {
    const onAccepted = (state?: ResumeState) => this.accepted(job, state);
    if (resume !== undefined) job.log.info("job resumed");
    else if (!this.o.engine.startsWhenAccepted) onAccepted();
    let outcome: Outcome;
    try {
      const onProgress = (progress: number, message?: string) => this.progress(job, progress, message);
      const result = await runEngine(
        this.o,
        job.record.view.id,
        job.record.input,
        { signal, onProgress, onAccepted },
        job.log,
        resume,
      );
      outcome = { status: "succeeded", result };
    } catch (err) {
      outcome = this.blame(job, signal, err);
    }
    if (outcome.status === "suspended") {
      job.log.info({ status: job.record.view.status }, "job left for the next start of the agent");
      return;
    }
    this.finish(job, outcome);
  }

  /** The engine's backend has the job (at once for most engines): it is running from now on. */
  private accepted(job: Job, resume: ResumeState | undefined): void {
    if (job.cancelRequested) return;
    if (job.record.view.status === "queued") {
      if (resume !== undefined) job.record = { ...job.record, resume };
      this.update(job, { status: "running", started_at: this.now().toISOString() });
      this.o.journal?.write(job.record.view.id, "started");
      job.log.info("job started");
    } else if (resume !== undefined) {
      job.record = { ...job.record, resume };
      this.update(job, {});
    }
  }

  private blame(job: Job, signal: AbortSignal, err: unknown): Outcome {
    if (job.cancelRequested) return { status: "cancelled" };
    if (this.closing && signal.aborted) {
      // Not started yet, or still in the hands of a backend that outlives the agent: both can go
      // on after the next start, the first from the queue, the second through `Engine.resume`.
      const { status } = job.record.view;
      if (status === "queued") return { status: "suspended" };
      if (this.o.engine.resume !== undefined && job.record.resume !== undefined)
        return { status: "suspended" };
      return failed("machine", STOPPED_WHILE_RUNNING);
    }
    if (err instanceof EngineError) return failed(err.kind, this.withoutPaths(err.message));
    job.log.error({ err }, "job failed outside the engine's own error handling");
    return failed("machine", this.withoutPaths(errorMessage(err)));
  }

  /**
   * A failure's message travels to the gateway and on to clients (`error_message`); the agent's
   * own folders are nobody else's business (issue 9: "no internal paths in messages"). The log
   * line of the failure keeps them.
   */
  private withoutPaths(message: string): string {
    return message.replaceAll(this.o.layout.dataDir, "<worker data dir>");
  }

  private progress(job: Job, progress: number, message?: string): void {
    if (job.record.view.status !== "running" || job.cancelRequested) return;
    const clamped = Math.min(100, Math.max(0, Math.round(Number.isFinite(progress) ? progress : 0)));
    const { view } = job.record;
    if (clamped === view.progress && message === view.message) return;
    this.update(job, message === undefined ? { progress: clamped } : { progress: clamped, message });
  }

  private finish(job: Job, outcome: Exclude<Outcome, { status: "suspended" }>): void {
    const { message: _lastStep, ...view } = job.record.view;
    const { resume: _resume, ...record } = job.record;
    job.record = record;
    const finished_at = this.now().toISOString();
    const next: JobView =
      outcome.status === "succeeded"
        ? { ...view, status: "succeeded", progress: 100, result: outcome.result, finished_at }
        : outcome.status === "failed"
          ? { ...view, status: "failed", error: outcome.error, finished_at }
          : { ...view, status: "cancelled", finished_at };
    this.replace(job, next);
    this.o.journal?.write(next.id, "finished", next.status);
    job.log.info({ status: next.status, error: next.error, result: next.result }, "job finished");
  }

  private update(job: Job, change: Partial<JobView>): void {
    this.replace(job, { ...job.record.view, ...change });
  }

  private replace(job: Job, view: JobView): void {
    job.record = { ...job.record, view: { ...view, version: job.record.view.version + 1 } };
    // Not awaited: the next change or close() waits for it, and deleting settles it first.
    this.o.records.save(job.record).catch((err: unknown) => {
      job.log.error({ err: errorMessage(err) }, "could not write the job record");
    });
    this.notify(job);
  }

  private notify(job: Job): void {
    for (const wake of [...job.waiters]) wake();
  }

  private async deleteJob(job: Job): Promise<JobView> {
    const { id, status } = job.record.view;
    const at = this.queue.indexOf(id);
    if (status === "queued" && at >= 0) {
      this.queue.splice(at, 1);
      this.update(job, { status: "cancelled", finished_at: this.now().toISOString() });
    } else if (status === "queued" || status === "running") {
      // Running, or queued while the engine waits for its backend to take it: both hold a slot.
      job.cancelRequested = true;
      job.abort?.abort(new Error("cancelled by the gateway"));
      await job.run;
    }
    // Files first: once the API says 404, nothing of the job is left on disk.
    await this.o.records.remove(id);
    await rm(this.o.layout.resultPath(id), { force: true });
    this.jobs.delete(id);
    this.notify(job);
    this.o.journal?.write(id, "deleted", job.record.view.status);
    job.log.info({ status: job.record.view.status }, "job deleted");
    return job.record.view;
  }

  /** Forgets finished jobs older than the retention, with their results. */
  private sweep(): void {
    const cutoff = this.now().getTime() - this.retentionMs;
    for (const job of this.jobs.values()) {
      const { status, finished_at } = job.record.view;
      if (!FINAL_JOB_STATUSES.has(status) || finished_at === undefined || job.deleting) continue;
      if (Date.parse(finished_at) > cutoff) continue;
      this.delete(job.record.view.id).catch((err: unknown) => {
        job.log.warn({ err: errorMessage(err) }, "could not expire the job");
      });
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function shuttingDown(): AppError {
  return new AppError("SHUTTING_DOWN", 503, "the worker agent is shutting down and takes no new jobs");
}
