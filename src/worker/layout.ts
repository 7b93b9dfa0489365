import { join } from "node:path";

/**
 * Where the worker agent keeps things under its data directory. Everything lives on one file
 * system so that blobs can be hard-linked into work dirs and results renamed into place.
 */
export interface WorkerLayout {
  readonly dataDir: string;
  /** Content-addressed inputs uploaded by the gateway (blobs/blob-store.ts). */
  readonly blobs: string;
  /** One `<id>.json` record per job (job-records.ts). */
  readonly jobs: string;
  /** Per-job scratch folders, removed when the run ends. */
  readonly work: string;
  readonly results: string;
  /** Text jobs' spoken audio, kept with the job as an artifact (`GET /v1/jobs/{id}/audio`). */
  readonly speech: string;
  workDir(jobId: string): string;
  resultPath(jobId: string): string;
  speechPath(jobId: string): string;
}

export function workerLayout(dataDir: string): WorkerLayout {
  const work = join(dataDir, "work");
  const results = join(dataDir, "results");
  const speech = join(dataDir, "speech");
  return {
    dataDir,
    blobs: join(dataDir, "blobs"),
    jobs: join(dataDir, "jobs"),
    work,
    results,
    speech,
    workDir: (jobId) => join(work, jobId),
    resultPath: (jobId) => join(results, `${jobId}.mp4`),
    speechPath: (jobId) => join(speech, `${jobId}.wav`),
  };
}
