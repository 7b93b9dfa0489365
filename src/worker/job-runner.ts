import { AgentStoppingError, type Engine, type ResumeState } from "../engines/engine.js";
import type { Speaker } from "../engines/speech/speaker.js";
import { AppError, ConflictError, EngineError, errorMessage, InputError, NotFoundError } from "../errors.js";
import type { Logger } from "../logger.js";
import {
  DEFAULT_JOB_OPTIONS,
  DEFAULT_SPEECH_LANG,
  FINAL_JOB_STATUSES,
  type JobView,
  type PutJobBody,
} from "../protocol/schemas.js";
import { removeFile } from "../remove-file.js";
import type { BlobCache } from "./blob-cache.js";
import { runEngine } from "./engine-run.js";
import type { JobJournal } from "./job-journal.js";
import { inputBlobs, type JobInput, type JobRecord, type JobRecords, sameInput } from "./job-records.js";
import { recoverJobs } from "./job-recovery.js";
import { DEFAULT_RESULT_RETENTION_MS, JobRetention } from "./job-retention.js";
import { failed, type Job, JobTransitions, type Outcome } from "./job-transitions.js";
import type { WorkerLayout } from "./layout.js";

export const STOPPED_WHILE_RUNNING = "the worker agent was stopped while this job was running";

export interface JobRunnerOptions {
  readonly engine: Engine;
  /** Speaks text jobs first (speech); absent: the agent refuses them (TTS_UNAVAILABLE). */
  readonly speaker?: Speaker | undefined;
  readonly blobs: BlobCache;
  readonly records: JobRecords;
  readonly layout: WorkerLayout;
  readonly logger: Logger;
  /** Finished jobs and their results are forgotten this long after they finish. */
  readonly resultRetentionMs?: number;
  /** Where every job's accepted/started/finished/deleted goes, for audits after the records are gone. */
  readonly journal?: JobJournal;
  readonly now?: () => Date;
  /** Told of every job that ends (succeeded, failed or cancelled), once. */
  readonly onFinished?: (view: JobView) => void;
}

/**
 * The worker's queue in front of its engine: accepted jobs wait `queued` (FIFO) until one of the
 * engine's `capacity` slots is free, then run to `succeeded`, `failed` or `cancelled`. Each change
 * of a job's state is one of job-transitions.ts; what the runner finds at start-up is settled by
 * job-recovery.ts, and finished jobs expire by job-retention.ts. An engine with
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
  private readonly now: () => Date;
  private readonly transitions: JobTransitions;
  private readonly retention: JobRetention;
  private nextSeq = 0;
  /** No long-poll parks any more: close() is under way. */
  private closing = false;
  /** Running jobs have been stopped (close, or the end of a drain's grace): nothing more starts. */
  private stopping = false;
  /** Taking no new job (SIGTERM): what was accepted before runs on. */
  private draining = false;
  /** Jobs accepted before the drain began: it is over once the gateway has collected them all. */
  private readonly drainSet = new Set<string>();
  /** Called whenever a job of `drainSet` may have been collected. */
  private readonly collectedWaiters = new Set<() => void>();

  private constructor(private readonly o: JobRunnerOptions) {
    this.capacity = Math.max(1, Math.floor(o.engine.capacity));
    this.now = o.now ?? (() => new Date());
    this.transitions = new JobTransitions({
      records: o.records,
      journal: o.journal,
      now: this.now,
      onFinished: o.onFinished,
    });
    this.retention = new JobRetention({
      retentionMs: o.resultRetentionMs ?? DEFAULT_RESULT_RETENTION_MS,
      now: this.now,
      jobs: () => this.jobs.values(),
      expire: (job) => this.delete(job.record.view.id),
    });
  }

  /** Loads the records left by an earlier run, settles them (job-recovery.ts), and starts work. */
  static async start(options: JobRunnerOptions): Promise<JobRunner> {
    const runner = new JobRunner(options);
    await runner.recover();
    runner.retention.start();
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

  /** The blobs that queued and running jobs will link into their work dirs: not to be evicted. */
  neededBlobs(): Set<string> {
    const needed = new Set<string>();
    for (const job of this.jobs.values()) {
      const { status } = job.record.view;
      if (status !== "queued" && status !== "running") continue;
      for (const blob of inputBlobs(job.record.input)) needed.add(blob.sha256);
    }
    return needed;
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
    if ((body.audio === undefined) === (body.speech === undefined)) {
      const field = body.audio === undefined ? "audio" : "speech";
      throw new InputError(
        "INVALID_REQUEST",
        "a job needs exactly one of audio (a blob to lip-sync) and speech (a text to speak first)",
        field,
      );
    }
    if (body.speech && !this.o.speaker) {
      throw new AppError(
        "TTS_UNAVAILABLE",
        "this worker cannot speak text (capabilities.tts is false); send text jobs to a machine that can",
      );
    }
    const input: JobInput = {
      ...(body.audio ? { audio: body.audio } : {}),
      ...(body.speech ? { speech: { ...body.speech, lang: body.speech.lang ?? DEFAULT_SPEECH_LANG } } : {}),
      video: body.video,
      options: { ...DEFAULT_JOB_OPTIONS, ...body.options },
      ...(body.audio_duration === undefined ? {} : { audio_duration: body.audio_duration }),
      ...(body.max_audio_seconds === undefined ? {} : { max_audio_seconds: body.max_audio_seconds }),
    };
    const existing = this.existing(id, input);
    if (existing) return { view: existing, created: false };
    this.refuseNewJobs();
    // Kept from eviction between the check and the job's record, which pins them from then on.
    const inputs = inputBlobs(input).map((b) => b.sha256);
    const release = this.o.blobs.hold(inputs);
    try {
      return await this.accept(id, input);
    } finally {
      release();
    }
  }

  private async accept(id: string, input: JobInput): Promise<{ view: JobView; created: boolean }> {
    // Looked up together (a stat each), then named in order: the first missing is the one refused.
    const blobs = inputBlobs(input);
    const held = await Promise.all(blobs.map((b) => this.o.blobs.has(b.sha256)));
    const missing = blobs.find((_, i) => held[i] === undefined);
    if (missing) {
      const { field, sha256 } = missing;
      throw new InputError("BLOB_MISSING", `upload the ${field} blob ${sha256} before the job`, field);
    }
    // Another PUT for this id may have won the race while the blobs were checked.
    const raced = this.existing(id, input);
    if (raced) return { view: raced, created: false };
    this.refuseNewJobs();

    // A job that finds a slot free starts in the write that accepts it: its record goes to disk
    // `running` at once, rather than `queued` and then `running`, so a freed slot's next job
    // begins one durable write sooner (issue 14's dispatch latency). Either way the record says
    // `running` before the engine begins (job-transitions.ts, `starting`).
    const startNow = this.startsAtOnce(input);
    const now = this.now().toISOString();
    const record: JobRecord = {
      seq: this.nextSeq++,
      input,
      view: {
        id,
        status: startNow ? "running" : "queued",
        progress: 0,
        ...(input.speech ? { speech_audio: null } : {}),
        created_at: now,
        ...(startNow ? { started_at: now } : {}),
        version: 0,
      },
    };
    const job = this.add(record);
    // The slot is taken before the write, so no other job can claim it meanwhile.
    if (startNow) this.running.add(id);
    // The job is visible (health, GET) from here, so a DELETE can come while its record is
    // written: it waits for this acceptance to be decided (deleteJob), which keeps the journal in
    // order (accepted before deleted) and never lets a deleted job begin.
    const acceptance = this.settleAcceptance(job, record, startNow);
    job.accepting = acceptance.catch(() => undefined);
    await acceptance;
    // After the start: marking the inputs used (a file time each) is bookkeeping for the cache's
    // eviction order, and the job's record already pins them (neededBlobs).
    await this.o.blobs.used(inputBlobs(input).map((b) => b.sha256));
    return { view: job.record.view, created: true };
  }

  /** Writes a new job's first record, then starts it, queues it or ends it, as the wait allows. */
  private async settleAcceptance(job: Job, record: JobRecord, startNow: boolean): Promise<void> {
    const { id } = record.view;
    try {
      await this.o.records.save(record);
    } catch (err) {
      this.jobs.delete(id);
      if (startNow) this.free(id);
      throw err;
    }
    this.transitions.accepted(job);
    if (job.deleting) {
      // Deleted while its record was written: it never begins, so it ends as a queued job does.
      this.transitions.cancelledInQueue(job);
      if (startNow) this.free(id);
    } else if (!startNow) {
      this.queue.push(id);
      this.pump();
    } else if (this.stopping) {
      // The agent began to stop meanwhile: it ends as the running jobs it stops do.
      this.transitions.finished(job, failed("machine", STOPPED_WHILE_RUNNING));
      this.free(id);
    } else {
      this.transitions.startedOnAcceptance(job);
      this.launch(job, undefined);
    }
  }

  /**
   * Whether a new job takes a slot the moment it is accepted: one is free and nothing waits for
   * it, and the engine starts the job itself (one that `startsWhenAccepted` holds it `queued` until
   * its backend has it, unless it must speak the text first).
   */
  private startsAtOnce(input: JobInput): boolean {
    return (
      !this.stopping &&
      this.running.size < this.capacity &&
      this.queue.length === 0 &&
      this.resuming.length === 0 &&
      (!this.o.engine.startsWhenAccepted || input.speech !== undefined)
    );
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

  /** Path of a text job's spoken audio (WAV), once spoken. */
  speechAudioPath(id: string): string {
    const { record } = this.get(id);
    if (!record.input.speech) {
      throw new NotFoundError(`job ${id} was given its audio; only text jobs (speech) have spoken audio`);
    }
    if (!record.view.speech_audio) {
      throw new ConflictError("JOB_NOT_FINISHED", `job ${id} has not spoken its text yet`);
    }
    return this.o.layout.speechPath(id);
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

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Takes no new job from now on (a PUT of a new id answers WORKER_DRAINING; one that re-attaches
   * to a known job still answers), while the jobs already accepted run on, queued ones included.
   */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    for (const id of [...this.running, ...this.queue, ...this.resuming]) this.drainSet.add(id);
  }

  /** Jobs accepted before the drain that the gateway has not collected (deleted) yet. */
  get uncollected(): number {
    let n = 0;
    for (const id of this.drainSet) {
      const job = this.jobs.get(id);
      // Once stopped, a job left for the next start (queued, or resumable) is nobody's to collect.
      if (job && (!this.stopping || FINAL_JOB_STATUSES.has(job.record.view.status))) n++;
    }
    return n;
  }

  /**
   * Resolves once every job accepted before the drain has been collected by the gateway (it
   * deletes a job once it has its result or its failure), or when `signal` aborts.
   */
  async whenCollected(signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.uncollected > 0 && !signal.aborted) return;
        this.collectedWaiters.delete(check);
        signal.removeEventListener("abort", check);
        resolve();
      };
      this.collectedWaiters.add(check);
      signal.addEventListener("abort", check, { once: true });
      check();
    });
  }

  /**
   * Stops the running jobs now: each is recorded as failed (kind `machine`, so the gateway runs it
   * elsewhere), or left for the next start when its engine can `resume` it (a HeyGem container
   * renders on). Queued jobs stay queued on disk. Long-polls still answer, so the gateway can
   * learn of the failures before the agent closes.
   */
  async stopJobs(): Promise<void> {
    this.stopping = true;
    for (const id of this.running) {
      this.jobs.get(id)?.abort?.abort(new AgentStoppingError(STOPPED_WHILE_RUNNING));
    }
    await Promise.all([...this.jobs.values()].map((job) => job.run));
    this.notifyCollected();
  }

  /**
   * Stops taking work and aborts running jobs, which are recorded as failed (kind `machine`) so
   * that a later start reports them honestly. Queued jobs stay queued on disk for the next start.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.stopping = true;
    this.retention.stop();
    for (const job of this.jobs.values()) this.transitions.wake(job);
    await this.stopJobs();
    await this.o.records.flush();
  }

  private refuseNewJobs(): void {
    if (this.stopping) throw shuttingDown();
    if (this.draining) {
      throw new AppError(
        "WORKER_DRAINING",
        "the worker agent is draining (it was asked to stop): it finishes its jobs and takes no new one",
      );
    }
  }

  private notifyCollected(): void {
    for (const check of [...this.collectedWaiters]) check();
  }

  private async recover(): Promise<void> {
    const records = await recoverJobs({
      layout: this.o.layout,
      records: this.o.records,
      journal: this.o.journal,
      logger: this.o.logger,
      canResume: this.o.engine.resume !== undefined,
      now: this.now(),
    });
    for (const record of records) {
      this.add(record);
      this.nextSeq = Math.max(this.nextSeq, record.seq + 1);
      if (record.view.status === "queued") this.queue.push(record.view.id);
      if (record.view.status === "running") this.resuming.push(record.view.id);
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
    while (!this.stopping && this.running.size < this.capacity) {
      const resumeId = this.resuming.shift();
      const id = resumeId ?? this.queue.shift();
      if (id === undefined) return;
      const job = this.jobs.get(id);
      if (!job) continue;
      this.running.add(id);
      this.launch(job, resumeId === undefined ? undefined : job.record.resume);
    }
  }

  /** Runs a job that holds a slot (in `running`); the slot is freed when its run is over. */
  private launch(job: Job, resume: ResumeState | undefined): void {
    const { id } = job.record.view;
    job.abort = new AbortController();
    job.run = this.execute(job, job.abort.signal, resume)
      .catch((err: unknown) => job.log.error({ err }, "job bookkeeping failed"))
      .finally(() => this.free(id));
  }

  private free(id: string): void {
    this.running.delete(id);
    this.pump();
  }

  private async execute(job: Job, signal: AbortSignal, resume?: ResumeState): Promise<void> {
    const onAccepted = (state?: ResumeState) => this.transitions.started(job, state);
    if (resume !== undefined) job.log.info("job resumed");
    // A text job runs from its first step, speech, whoever later takes the lip-sync.
    else if (!this.o.engine.startsWhenAccepted || job.record.input.speech)
      await this.transitions.starting(job);
    let outcome: Outcome;
    try {
      const onProgress = (progress: number, message?: string) =>
        this.transitions.progressed(job, progress, message);
      const result = await runEngine(
        this.o,
        job.record.view.id,
        job.record.input,
        { signal, onProgress, onAccepted },
        job.log,
        resume,
        (audio) => this.transitions.spoken(job, audio),
      );
      outcome = { status: "succeeded", result };
    } catch (err) {
      outcome = this.blame(job, signal, err);
    }
    if (outcome.status === "suspended") {
      job.log.info({ status: job.record.view.status }, "job left for the next start of the agent");
      return;
    }
    this.transitions.finished(job, outcome);
  }

  private blame(job: Job, signal: AbortSignal, err: unknown): Outcome {
    if (job.cancelRequested) return { status: "cancelled" };
    if (this.stopping && signal.aborted) {
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

  private async deleteJob(job: Job): Promise<JobView> {
    await job.accepting;
    const { id, status } = job.record.view;
    const at = this.queue.indexOf(id);
    if (status === "queued" && at >= 0) {
      this.queue.splice(at, 1);
      this.transitions.cancelledInQueue(job);
    } else if (status === "queued" || status === "running") {
      // Running, or queued while the engine waits for its backend to take it: both hold a slot.
      job.cancelRequested = true;
      job.abort?.abort(new Error("cancelled by the gateway"));
      await job.run;
    }
    // Files first: once the API says 404, nothing of the job is left on disk.
    await this.o.records.remove(id);
    await removeFile(this.o.layout.resultPath(id));
    await removeFile(this.o.layout.speechPath(id));
    this.jobs.delete(id);
    this.transitions.deleted(job);
    this.notifyCollected();
    return job.record.view;
  }
}

function shuttingDown(): AppError {
  return new AppError("SHUTTING_DOWN", "the worker agent is shutting down and takes no new jobs");
}
