import type { JobOptions } from "../protocol/schemas.js";

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

export interface EngineRunContext {
  readonly signal: AbortSignal;
  /** Progress 0–100 and the engine's own words for the step. */
  onProgress(progress: number, message?: string): void;
}

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
  /** Releases what the engine holds (child processes, pollers). */
  close?(): Promise<void>;
}
