import { extname } from "node:path";
import { EngineError, errorMessage, ProtocolError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { EngineJob } from "../engine.js";
import { HeygemUnreachableError } from "./heygem-api.js";
import { removeTaskFiles, stageInput } from "./heygem-files.js";
import type { HeygemInstance } from "./heygem-instance.js";
import { seconds } from "./task-watch.js";

/** The longest pause between two tries while every instance is busy. */
const MAX_BACKOFF_MS = 60_000;

export interface PlacementOptions {
  readonly instances: readonly HeygemInstance[];
  readonly busyTimeoutMs: number;
  readonly busyBackoffMs: number;
  /** Resolves when an instance is released or after `ms`; rejects when `signal` aborts. */
  readonly waitForRelease: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly log: Logger | undefined;
}

export interface TaskFiles {
  readonly audioName: string;
  readonly videoName: string;
}

/** Input names in the container's temp folder: the code, what the file is, and its own extension. */
export function taskFiles(job: EngineJob, code: string): TaskFiles {
  // HeyGem picks decoders by extension, so each keeps the one the worker gave it.
  return {
    audioName: `${code}-audio${extname(job.audioPath) || ".wav"}`,
    videoName: `${code}-video${extname(job.videoPath) || ".mp4"}`,
  };
}

/**
 * Finds an instance that takes the task and submits it there; resolves with that instance, held
 * for the job. A busy answer (10001: someone else uses the container; nothing was queued) moves on
 * to the next free instance, then backs off and tries again, up to `busyTimeoutMs`. An instance
 * that does not answer is marked unhealthy and skipped. The job stays `queued` all the while.
 */
export async function placeTask(
  options: PlacementOptions,
  job: EngineJob,
  code: string,
  signal: AbortSignal,
): Promise<HeygemInstance> {
  const { instances, log } = options;
  const files = taskFiles(job, code);
  // Staged once per data folder and kept across busy retries: a copy of a big template is slow.
  const staged = new Set<string>();
  let accepted: HeygemInstance | undefined;
  let waitingSince: number | undefined;
  let backoff = options.busyBackoffMs;
  try {
    for (;;) {
      signal.throwIfAborted();
      let candidates = instances.filter((i) => i.isFree && i.isUsable);
      if (candidates.length === 0) {
        // "Unhealthy until it answers again": ask the doubtful ones now rather than fail on old news.
        await Promise.all(instances.filter((i) => i.isFree && !i.isUsable).map((i) => i.probeNow()));
        candidates = instances.filter((i) => i.isFree && i.isUsable);
      }
      // Instances that answered busy last time go last: someone else is probably still on them.
      candidates.sort((a, b) => Number(a.isBusyElsewhere) - Number(b.isBusyElsewhere));
      for (const instance of candidates) {
        if (!instance.tryReserve(job.id)) continue;
        try {
          if (!staged.has(instance.tempDir)) {
            staged.add(instance.tempDir);
            await stage(instance, job, files);
          }
          const reply = await instance.submit({ code, ...files, options: job.options }, signal);
          if (reply.kind === "accepted") {
            accepted = instance;
            return instance;
          }
          if (reply.kind === "busy") {
            log?.info(
              { instance: instance.name, reply: reply.code },
              "HeyGem instance busy; trying elsewhere or later",
            );
            continue;
          }
          const message = `HeyGem instance ${instance.name} refused the task: ${reply.code} ${reply.msg}`;
          instance.markUnhealthy(message);
          throw new EngineError("machine", message);
        } catch (err) {
          if (!(err instanceof HeygemUnreachableError || err instanceof ProtocolError) || signal.aborted)
            throw err;
          instance.markUnhealthy(`HeyGem instance ${instance.name} does not answer: ${err.message}`);
        } finally {
          if (accepted !== instance) instance.cancelReservation();
        }
      }

      if (!instances.some(worthWaitingFor)) {
        throw new EngineError("machine", `no HeyGem instance can take the job: ${summary(instances)}`);
      }
      const now = Date.now();
      waitingSince ??= now;
      const waited = now - waitingSince;
      if (waited >= options.busyTimeoutMs) {
        throw new EngineError(
          "machine",
          `HeyGem stayed busy for more than ${seconds(options.busyTimeoutMs)} s: ${summary(instances)}`,
        );
      }
      await options.waitForRelease(Math.min(backoff, options.busyTimeoutMs - waited), signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  } finally {
    for (const tempDir of staged) {
      if (tempDir !== accepted?.tempDir) await removeTaskFiles(tempDir, code).catch(() => undefined);
    }
  }
}

async function stage(instance: HeygemInstance, job: EngineJob, files: TaskFiles): Promise<void> {
  try {
    await stageInput(job.audioPath, instance.tempDir, files.audioName);
    await stageInput(job.videoPath, instance.tempDir, files.videoName);
  } catch (err) {
    const message = `cannot place the inputs in ${instance.tempDir} for HeyGem instance ${instance.name}: ${errorMessage(err)}`;
    instance.markUnhealthy(message);
    throw new EngineError("machine", message);
  }
}

/** Busy with someone else's task, or with one of ours (or a cancelled one) that will end. */
function worthWaitingFor(instance: HeygemInstance): boolean {
  if (instance.isHung) return false;
  if (!instance.isFree) return true;
  return instance.isBusyElsewhere && instance.isUsable;
}

/** One line per instance, for the error a job fails with when none takes it. */
function summary(instances: readonly HeygemInstance[]): string {
  return instances
    .map((i) => {
      const h = i.health();
      const state = !h.reachable
        ? "does not answer"
        : h.job !== undefined
          ? `runs job ${h.job}`
          : i.heldByOrphan
            ? "still renders the task of a job that is over"
            : h.busy
              ? "busy with another client's task"
              : h.healthy === false
                ? "unhealthy"
                : "free";
      return `${i.name} ${state}${h.last_error && state !== "free" ? ` (${h.last_error})` : ""}`;
    })
    .join("; ");
}
