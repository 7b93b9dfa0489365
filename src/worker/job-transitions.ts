import type { ResumeState } from "../engines/engine.js";
import { errorMessage, type FailureKind } from "../errors.js";
import type { Logger } from "../logger.js";
import type { JobView } from "../protocol/schemas.js";
import type { JobResult } from "./engine-run.js";
import type { JobJournal } from "./job-journal.js";
import type { JobRecord, JobRecords } from "./job-records.js";

/** One job in the agent's memory: its record (mirrored on disk) and what is live about it. */
export interface Job {
  record: JobRecord;
  readonly log: Logger;
  /** Long-polls parked on this job; each is called once on the next change. */
  readonly waiters: Set<() => void>;
  abort?: AbortController;
  /** Settles when the engine run (and the bookkeeping after it) is over. */
  run?: Promise<void>;
  cancelRequested?: boolean;
  /** Settles once the job's first record is written and the job started, queued or ended. */
  accepting?: Promise<void> | undefined;
  deleting?: Promise<JobView> | undefined;
}

/** How an engine run ended, as far as its job is concerned. */
export type Outcome =
  | { status: "succeeded"; result: JobResult }
  | { status: "failed"; error: { kind: FailureKind; message: string } }
  | { status: "cancelled" }
  /** The agent stops: the record stays as it is (queued, or running to be resumed) for the next start. */
  | { status: "suspended" };

export function failed(kind: FailureKind, message: string): Extract<Outcome, { status: "failed" }> {
  return { status: "failed", error: { kind, message } };
}

export interface JobTransitionsOptions {
  readonly records: JobRecords;
  readonly journal: JobJournal | undefined;
  readonly now: () => Date;
  /** Told of every job that ends, once (metrics). */
  readonly onFinished?: ((view: JobView) => void) | undefined;
}

/**
 * The changes of a job's state, each written once: every change bumps the job's `version`, is
 * written to its record and wakes its long-polls, and those an audit needs (started, finished,
 * deleted) also go to the journal.
 */
export class JobTransitions {
  constructor(private readonly o: JobTransitionsOptions) {}

  /** A new job, its record on disk: it waits `queued` for a slot of the engine. */
  accepted(job: Job): void {
    const { input } = job.record;
    job.log.info(
      {
        ...(input.audio ? { audio: input.audio.sha256 } : {}),
        ...(input.speech
          ? {
              speech: {
                chars: input.speech.text.length,
                lang: input.speech.lang,
                voice: input.speech.voice?.id,
              },
            }
          : {}),
        video: input.video.sha256,
        options: input.options,
      },
      "job accepted",
    );
    this.o.journal?.write(job.record.view.id, "accepted");
  }

  /** The engine's backend has the job (at once for most engines): it is running from now on. */
  started(job: Job, resume: ResumeState | undefined): void {
    if (job.cancelRequested) return;
    if (job.record.view.status === "queued") {
      if (resume !== undefined) job.record = { ...job.record, resume };
      this.update(job, { status: "running", started_at: this.o.now().toISOString() });
      this.o.journal?.write(job.record.view.id, "started");
      job.log.info("job started");
    } else if (resume !== undefined) {
      job.record = { ...job.record, resume };
      this.update(job, {});
    }
  }

  /**
   * The worker starts the engine on a job itself (not a backend that takes it when accepted): the
   * job is `running` on disk before the engine begins, and only then in the journal. A kill -9 of
   * the agent before that leaves it `queued`, to run at the next start as the job that never began
   * that it is; after, `running`, to fail at the next start (job-records.ts, recoverRecord). Either
   * way no job's engine run begins twice, which the journal would show.
   */
  async starting(job: Job): Promise<void> {
    if (job.cancelRequested || job.record.view.status !== "queued") return;
    await this.update(job, { status: "running", started_at: this.o.now().toISOString() });
    this.o.journal?.write(job.record.view.id, "started");
    job.log.info("job started");
  }

  /**
   * A job accepted into a free slot: its first record already says `running` (JobRunner.accept),
   * so it is journaled as started right after `accepted`, and `starting` has nothing left to do.
   */
  startedOnAcceptance(job: Job): void {
    this.o.journal?.write(job.record.view.id, "started");
    job.log.info("job started");
  }

  /** A text job's speech is spoken and kept (GET /v1/jobs/{id}/audio). */
  spoken(job: Job, audio: { sha256: string; bytes: number }): void {
    if (job.cancelRequested) return;
    this.update(job, { speech_audio: audio });
  }

  progressed(job: Job, progress: number, message?: string): void {
    if (job.record.view.status !== "running" || job.cancelRequested) return;
    const clamped = Math.min(100, Math.max(0, Math.round(Number.isFinite(progress) ? progress : 0)));
    const { view } = job.record;
    if (clamped === view.progress && message === view.message) return;
    this.update(job, message === undefined ? { progress: clamped } : { progress: clamped, message });
  }

  finished(job: Job, outcome: Exclude<Outcome, { status: "suspended" }>): void {
    const { message: _lastStep, ...view } = job.record.view;
    const { resume: _resume, ...record } = job.record;
    job.record = record;
    const finished_at = this.o.now().toISOString();
    const next: JobView =
      outcome.status === "succeeded"
        ? { ...view, status: "succeeded", progress: 100, result: outcome.result, finished_at }
        : outcome.status === "failed"
          ? { ...view, status: "failed", error: outcome.error, finished_at }
          : { ...view, status: "cancelled", finished_at };
    this.replace(job, next);
    this.o.journal?.write(next.id, "finished", next.status);
    this.o.onFinished?.(job.record.view);
    job.log.info({ status: next.status, error: next.error, result: next.result }, "job finished");
  }

  /** Cancelled while it waited in the queue: it never ran, so nothing else is to be undone. */
  cancelledInQueue(job: Job): void {
    this.update(job, { status: "cancelled", finished_at: this.o.now().toISOString() });
    this.o.journal?.write(job.record.view.id, "finished", "cancelled");
    this.o.onFinished?.(job.record.view);
  }

  /** The job and its files are gone; its long-polls answer with its last view. */
  deleted(job: Job): void {
    this.wake(job);
    this.o.journal?.write(job.record.view.id, "deleted", job.record.view.status);
    job.log.info({ status: job.record.view.status }, "job deleted");
  }

  /** Ends the job's long-polls without a change (the agent is closing). */
  wake(job: Job): void {
    for (const wake of [...job.waiters]) wake();
  }

  /** Resolves once the record is on disk (or could not be written, which is logged). */
  private update(job: Job, change: Partial<JobView>): Promise<void> {
    return this.replace(job, { ...job.record.view, ...change });
  }

  private replace(job: Job, view: JobView): Promise<void> {
    job.record = { ...job.record, view: { ...view, version: job.record.view.version + 1 } };
    // Awaited only where it must be (starting): the next change or close() waits for it, and
    // deleting settles it first.
    const saved = this.o.records.save(job.record).catch((err: unknown) => {
      job.log.error({ err: errorMessage(err) }, "could not write the job record");
    });
    this.wake(job);
    return saved;
  }
}
