import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../logger.js";
import { makeDir } from "../make-dir.js";
import { removeFile } from "../remove-file.js";
import type { JobJournal } from "./job-journal.js";
import { failRecord, type JobRecord, type JobRecords, recoverRecord } from "./job-records.js";
import type { WorkerLayout } from "./layout.js";

export interface JobRecoveryOptions {
  readonly layout: WorkerLayout;
  readonly records: JobRecords;
  readonly journal: JobJournal | undefined;
  readonly logger: Logger;
  /** Whether the engine can pick up a job its backend went on with (`Engine.resume`). */
  readonly canResume: boolean;
  readonly now: Date;
}

/**
 * Start-up: the records an earlier run left, settled (job-records.ts, `recoverRecord`) and saved
 * again where they changed, in acceptance order. `queued` ones wait for a slot as before; `running`
 * ones are jobs the engine resumes. A succeeded job whose MP4 is gone failed after all. Nothing runs
 * yet, so every work dir is the leftover of a run that died with its process, and every result no
 * record names is an orphan: both are removed.
 */
export async function recoverJobs(o: JobRecoveryOptions): Promise<JobRecord[]> {
  const { layout } = o;
  await Promise.all([layout.work, layout.results, layout.speech].map((dir) => makeDir(dir)));
  for (const name of await readdir(layout.work)) {
    await rm(join(layout.work, name), { recursive: true, force: true });
  }

  const recovered: JobRecord[] = [];
  for (const loaded of await o.records.loadAll()) {
    let record = recoverRecord(loaded, o.now, o.canResume);
    if (record.view.status === "succeeded" && !(await exists(layout.resultPath(record.view.id)))) {
      record = failRecord(record, o.now, "the result file of this job is gone from the worker's disk");
    }
    if (record !== loaded) await o.records.save(record);
    recovered.push(record);
    const log = o.logger.child({ job_id: record.view.id });
    if (record.view.status === "running") {
      log.info({ resume: record.resume }, "job was running before the restart; resuming it");
    }
    if (loaded.view.status !== record.view.status) {
      if (loaded.view.status === "running") o.journal?.write(record.view.id, "finished", record.view.status);
      log.warn({ was: loaded.view.status, error: record.view.error }, "job settled after a restart");
    }
  }

  const known = new Set(recovered.map((r) => r.view.id));
  for (const name of await readdir(layout.results)) {
    const id = name.replace(/\.mp4$/, "");
    if (!known.has(id)) await removeFile(join(layout.results, name));
  }
  for (const name of await readdir(layout.speech)) {
    if (!known.has(name.replace(/\.wav$/, ""))) await removeFile(join(layout.speech, name));
  }
  return recovered;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
