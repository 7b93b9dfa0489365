import type { Health, JobOptions } from "../protocol/schemas.js";

/** What one engine run needs; every path is on the worker machine's disk. */
export interface EngineJob {
  readonly id: string;
  readonly audioPath: string;
  readonly videoPath: string;
  /** Where the engine must leave the finished MP4. */
  readonly outputPath: string;
  /** A private scratch folder for this job; the worker removes it afterwards. */
  readonly workDir: string;
  readonly options: JobOptions;
  /** Seconds, when the gateway probed it; engines may probe themselves. */
  readonly audioDuration?: number;
}

/**
 * A small JSON object an engine saves when its backend has taken a job (HeyGem: the instance and
 * the task's code), so that after an agent restart `Engine.resume` can follow the job again.
 */
export type ResumeState = { readonly [key: string]: unknown };

export interface EngineRunContext {
  readonly signal: AbortSignal;
  /** Progress 0–100 and the engine's own words for the step. */
  onProgress(progress: number, message?: string): void;
  /**
   * For engines with `startsWhenAccepted`: the backend has taken the job, which is `running` from
   * now on; `resume`, when given, is kept with the job record for `Engine.resume`.
   */
  onAccepted?(resume?: ResumeState): void;
}

/**
 * The reason the worker's signal aborts with when the agent stops (not when a job is cancelled):
 * an engine that can `resume` may leave its backend working and pick the job up after the restart.
 */
export class AgentStoppingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentStoppingError";
  }
}

export type EngineInstanceHealth = NonNullable<Health["instances"]>[number];

/**
 * The one interface every engine implements (like Kysely's dialects): adding an engine is one new
 * file plus one line in engines/registry.ts.
 *
 * `run` resolves once `outputPath` holds the complete MP4, and rejects with an `EngineError`
 * whose kind says whose fault a failure is. It must stop promptly when `signal` aborts.
 */
export interface Engine {
  readonly name: string;
  /** How many jobs this engine can run at once on this machine. */
  readonly capacity: number;
  run(job: EngineJob, ctx: EngineRunContext): Promise<void>;
  /**
   * When true, `run` first waits for its backend to take the job (HeyGem answers busy while
   * another client uses it) and calls `ctx.onAccepted()` once it has; until then the job shows as
   * `queued`. Engines without it are `running` as soon as `run` is called.
   */
  readonly startsWhenAccepted?: boolean;
  /**
   * Follows a job accepted before the agent restarted, from the state given to `ctx.onAccepted`;
   * settles like `run`. A job the backend no longer knows rejects with a `machine` EngineError.
   * Engines without it have their running jobs failed (kind `machine`) after a restart.
   */
  resume?(job: EngineJob, state: ResumeState, ctx: EngineRunContext): Promise<void>;
  /**
   * Ids of jobs that are over (cancelled, failed) while their backend still works on them and so
   * keeps one of the engine's slots (a HeyGem container cannot cancel a task), for `/v1/health`.
   */
  held?(): string[];
  /** The engine's backends one by one (HeyGem containers), for `/v1/health`. */
  instances?(): EngineInstanceHealth[];
  /** Releases what the engine holds (child processes, pollers). */
  close?(): Promise<void>;
}

/** An engine's `capacity` from its option (1 when absent), refused at construction unless a whole number ≥ 1. */
export function engineCapacity(engine: string, value: number | undefined): number {
  const capacity = value ?? 1;
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`${engine} engine capacity must be a whole number ≥ 1, got ${capacity}`);
  }
  return capacity;
}
