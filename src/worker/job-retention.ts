import { errorMessage } from "../errors.js";
import { FINAL_JOB_STATUSES } from "../protocol/schemas.js";
import type { Job } from "./job-transitions.js";

export const DEFAULT_RESULT_RETENTION_MS = 24 * 60 * 60 * 1000;

export interface JobRetentionOptions {
  /** Finished jobs and their results are forgotten this long after they finish. */
  readonly retentionMs: number;
  readonly now: () => Date;
  readonly jobs: () => Iterable<Job>;
  /** Forgets one job with its files (the runner's `delete`). */
  readonly expire: (job: Job) => Promise<unknown>;
}

/**
 * Retention of finished jobs (house-style.md, "Retention as a first-class setting"): the gateway
 * takes a result home as soon as its job succeeds and then deletes the job, so what stays is what
 * nobody came back for; it goes once it is older than the retention, its result with it.
 */
export class JobRetention {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: JobRetentionOptions) {}

  /** Sweeps now, then on a timer that does not keep the process alive. */
  start(): void {
    this.sweep();
    // Often enough that a result outlives its retention by at most a tenth of it.
    const every = Math.min(Math.max(this.o.retentionMs / 10, 100), 10 * 60 * 1000);
    this.timer = setInterval(() => this.sweep(), every);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sweep(): void {
    const cutoff = this.o.now().getTime() - this.o.retentionMs;
    for (const job of this.o.jobs()) {
      const { status, finished_at } = job.record.view;
      if (!FINAL_JOB_STATUSES.has(status) || finished_at === undefined || job.deleting) continue;
      if (Date.parse(finished_at) > cutoff) continue;
      this.o.expire(job).catch((err: unknown) => {
        job.log.warn({ err: errorMessage(err) }, "could not expire the job");
      });
    }
  }
}
