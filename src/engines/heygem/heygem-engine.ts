import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { EngineError, errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { probeMedia } from "../../media/probe.js";
import { audioSeconds } from "../audio-seconds.js";
import {
  AgentStoppingError,
  type Engine,
  type EngineInstanceHealth,
  type EngineJob,
  type EngineRunContext,
  type ResumeState,
} from "../engine.js";
import { moveIntoPlace } from "../move-into-place.js";
import { classifyFailure } from "./failure-classes.js";
import { isNonEmptyFile, removeTaskFiles, resultPath } from "./heygem-files.js";
import { HeygemInstance } from "./heygem-instance.js";
import type { HeygemSettings } from "./heygem-settings.js";
import { placeTask } from "./placement.js";
import { type FinalVerdict, isFinal, seconds, TaskWatch } from "./task-watch.js";

/** What a job saves once HeyGem has accepted it, to follow it again after an agent restart. */
const HeygemResumeState = Type.Object({
  instance: Type.String(),
  code: Type.String({ pattern: "^mh[0-9a-f]{32}$" }),
  /** Epoch ms of the accepted submit: the overall limit counts from here, across restarts. */
  submitted_at: Type.Number(),
  audio_sec: Type.Optional(Type.Number({ minimum: 0 })),
});
type HeygemResumeState = Static<typeof HeygemResumeState>;

export interface HeygemEngineOptions {
  readonly settings: HeygemSettings;
  readonly logger?: Logger | undefined;
}

/**
 * The engine in front of HeyGem gen-video containers, one per GPU (heygem-contract.md). Each job
 * is placed on a free instance: its inputs go into that instance's data folder, it is submitted
 * with a fresh code, and the instance's one poller follows it to the end, when the result is moved
 * out and the task's files are removed. The machine's capacity is its number of instances.
 */
export class HeygemEngine implements Engine {
  readonly name = "heygem";
  readonly capacity: number;
  readonly startsWhenAccepted = true;
  private readonly instanceList: HeygemInstance[];
  private readonly byName = new Map<string, HeygemInstance>();
  private readonly log: Logger | undefined;
  private readonly releaseWaiters = new Set<() => void>();
  /** Follow-ups of jobs that are over while their task still runs in a container. */
  private readonly orphans = new Set<Promise<void>>();

  constructor(private readonly options: HeygemEngineOptions) {
    const { settings } = options;
    if (settings.instances.length === 0) {
      throw new RangeError("the heygem engine needs at least one instance (--heygem URL=DATA_DIR)");
    }
    this.log = options.logger?.child({ engine: this.name });
    this.instanceList = settings.instances.map(
      (config) =>
        new HeygemInstance({
          config,
          pollIntervalMs: settings.pollIntervalMs,
          probeIntervalMs: settings.probeIntervalMs,
          requestTimeoutMs: settings.requestTimeoutMs,
          logger: this.log,
          onRelease: () => {
            for (const wake of [...this.releaseWaiters]) wake();
          },
        }),
    );
    for (const instance of this.instanceList) this.byName.set(instance.name, instance);
    this.capacity = this.instanceList.length;
    for (const instance of this.instanceList) instance.start();
  }

  held(): string[] {
    const ids: string[] = [];
    for (const instance of this.instanceList) {
      const job = instance.orphanedJob;
      if (job !== undefined) ids.push(job);
    }
    return ids;
  }

  instances(): EngineInstanceHealth[] {
    return this.instanceList.map((i) => i.health());
  }

  async run(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    const log = this.log?.child({ job_id: job.id });
    // For the overall limit. HeyGem reads the audio itself and says so if it cannot, and the stall
    // timer applies whatever the length, so a probe that fails leaves only the limit unknown.
    const audioSec = await audioSeconds(job, ctx.signal).catch(() => undefined);
    const code = `mh${randomBytes(16).toString("hex")}`;
    const { settings } = this.options;
    const instance = await placeTask(
      {
        instances: this.instanceList,
        busyTimeoutMs: settings.busyTimeoutMs,
        busyBackoffMs: settings.busyBackoffMs,
        waitForRelease: (ms, signal) => this.waitForRelease(ms, signal),
        log,
      },
      job,
      code,
      ctx.signal,
    );
    const state: HeygemResumeState = {
      instance: instance.name,
      code,
      submitted_at: Date.now(),
      ...(audioSec === undefined ? {} : { audio_sec: audioSec }),
    };
    log?.info({ instance: instance.name, code, options: job.options }, "HeyGem accepted the task");
    ctx.onAccepted?.(state);
    await this.follow(job, state, instance, ctx, log, false);
  }

  async resume(job: EngineJob, saved: ResumeState, ctx: EngineRunContext): Promise<void> {
    const log = this.log?.child({ job_id: job.id });
    if (!Value.Check(HeygemResumeState, saved)) {
      throw new EngineError("machine", "lost: the saved HeyGem state of this job is unreadable");
    }
    const instance = this.byName.get(saved.instance);
    if (!instance) {
      throw new EngineError("machine", `lost: HeyGem instance ${saved.instance} is no longer configured`);
    }
    if (!instance.tryReserve(job.id)) {
      throw new EngineError("machine", `lost: HeyGem instance ${saved.instance} is held by another job`);
    }
    log?.info(
      { instance: instance.name, code: saved.code },
      "following the HeyGem task again after a restart",
    );
    await this.follow(job, saved, instance, ctx, log, true);
  }

  async close(): Promise<void> {
    await Promise.all(this.instanceList.map((i) => i.close()));
    await Promise.allSettled([...this.orphans]);
  }

  /**
   * Follows the accepted task until it settles. When the job's signal aborts: an agent that stops
   * leaves the task to be resumed after its restart; a cancelled job has its task followed on in
   * the background (HeyGem cannot cancel one), so the instance stays taken until the container is
   * done and the task's files can be removed.
   */
  private async follow(
    job: EngineJob,
    state: HeygemResumeState,
    instance: HeygemInstance,
    ctx: EngineRunContext,
    log: Logger | undefined,
    resumed: boolean,
  ): Promise<void> {
    const { settings } = this.options;
    const deadlineAt =
      state.audio_sec === undefined
        ? undefined
        : state.submitted_at + settings.timeoutBaseMs + settings.timeoutPerAudioSecondMs * state.audio_sec;
    const watch = new TaskWatch(
      { stallMs: settings.stallTimeoutMs, deadlineAt, unreachableGraceMs: settings.unreachableGraceMs },
      Date.now(),
    );
    const run = { job, state, instance, log, resumed, detached: false, settling: false };
    const final = instance.follow<FinalVerdict>(state.code, (outcome) => {
      const verdict = watch.observe(outcome, Date.now());
      if (verdict.kind === "running" && verdict.changed && !run.detached) {
        ctx.onProgress(verdict.progress, verdict.msg);
      }
      return isFinal(verdict) ? verdict : undefined;
    });
    const settled = final.then(
      (verdict) => {
        run.settling = true;
        return this.settle(verdict, run);
      },
      (err: unknown) => {
        // Stopped (the agent stops; the task is resumed after its restart) or closed: files stay.
        instance.cancelReservation();
        throw err;
      },
    );

    const { signal } = ctx;
    let onAbort = () => {};
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(signal.reason);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      await Promise.race([settled, aborted]);
    } catch (err) {
      if (!signal.aborted) throw err;
      if (signal.reason instanceof AgentStoppingError && run.settling) {
        // The final answer is in hand and HeyGem has forgotten the task: finish here, or it is lost.
        await settled;
        return;
      }
      if (signal.reason instanceof AgentStoppingError) {
        instance.stopFollowing(state.code);
        settled.catch(() => undefined);
      } else {
        log?.info(
          { instance: instance.name, code: state.code },
          "job cancelled; following its HeyGem task to its end",
        );
        run.detached = true;
        instance.orphan();
        this.keep(settled, log);
      }
      throw signal.reason;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  private async settle(
    verdict: FinalVerdict,
    run: {
      readonly job: EngineJob;
      readonly state: HeygemResumeState;
      readonly instance: HeygemInstance;
      readonly log: Logger | undefined;
      readonly resumed: boolean;
      /** The job no longer waits (cancelled): the result is not wanted. */
      readonly detached: boolean;
    },
  ): Promise<void> {
    const { job, state, instance, log } = run;
    const { code } = state;
    const cleanUp = async () => {
      await removeTaskFiles(instance.tempDir, code).catch((err: unknown) =>
        log?.warn(
          { err: errorMessage(err) },
          "could not remove the task's files from the HeyGem temp folder",
        ),
      );
    };
    const fail = async (kind: "input" | "machine", message: string): Promise<never> => {
      if (kind === "machine") instance.markUnhealthy(message);
      await cleanUp();
      instance.release();
      throw new EngineError(kind, message);
    };

    switch (verdict.kind) {
      case "succeeded": {
        const source = resultPath(instance.tempDir, code, verdict.result);
        if (!(await isNonEmptyFile(source))) {
          return fail(
            "machine",
            `HeyGem finished task ${code} as ${verdict.result || "(no result)"}, but ${source} is missing or empty: ` +
              `the container's /code/data is probably not mapped to ${instance.dataDir} (wrong volume mapping)`,
          );
        }
        if (!run.detached) await moveIntoPlace(source, job.outputPath);
        await cleanUp();
        instance.release();
        log?.info({ instance: instance.name, code }, "HeyGem task succeeded");
        return;
      }
      case "failed": {
        const failure = classifyFailure(verdict.msg);
        log?.warn(
          { instance: instance.name, code, kind: failure.kind, engine_msg: verdict.msg },
          "HeyGem task failed",
        );
        return fail(failure.kind, failure.message);
      }
      case "gone": {
        // The final answer is given once; if it was missed (a restart in between), a complete
        // result file still tells that the task succeeded.
        const source = resultPath(instance.tempDir, code, "");
        if (await isPlayableVideo(source)) {
          log?.warn(
            { instance: instance.name, code },
            "HeyGem forgot the task but its result is there; taking it",
          );
          if (!run.detached) await moveIntoPlace(source, job.outputPath);
          await cleanUp();
          instance.release();
          return;
        }
        return fail(
          "machine",
          run.resumed
            ? `lost: HeyGem instance ${instance.name} no longer knows task ${code} (it restarted, or finished ` +
                "the task while the agent was down) and no result was left"
            : `lost: HeyGem instance ${instance.name} forgot task ${code} while it ran (10004: the container restarted?)`,
        );
      }
      case "unreachable":
        return fail(
          "machine",
          `HeyGem instance ${instance.name} did not answer for ${seconds(verdict.forMs)} s while it ran task ${code}: ${verdict.error}`,
        );
      case "stalled":
      case "overdue": {
        const at = `${verdict.progress} %${verdict.msg ? ` ("${verdict.msg}")` : ""}`;
        const message =
          verdict.kind === "stalled"
            ? `HeyGem stalled at ${at}: no progress for ${seconds(verdict.forMs)} s. A hang at 5 % ` +
              "usually means the GPU is not visible in the container, at 20 % that it ran out of GPU memory"
            : `HeyGem did not finish within its limit of ${seconds(this.limitMs(state))} s for ` +
              `${state.audio_sec ?? "?"} s of audio (at ${at})`;
        log?.warn({ instance: instance.name, code }, message);
        // The container still holds the hung task and takes nothing else until it ends.
        instance.markUnhealthy(message, true);
        instance.orphan();
        this.keep(this.followToEnd(instance, code, log), log);
        throw new EngineError("machine", message);
      }
    }
  }

  /** Polls a task nobody waits for until the container is done with it, then frees the instance. */
  private async followToEnd(instance: HeygemInstance, code: string, log: Logger | undefined): Promise<void> {
    let silentSince: number | undefined;
    const { unreachableGraceMs } = this.options.settings;
    const end = await instance.follow<"done" | "unreachable">(code, (outcome) => {
      if (outcome instanceof Error || outcome.kind === "error") {
        silentSince ??= Date.now();
        return Date.now() - silentSince >= unreachableGraceMs ? "unreachable" : undefined;
      }
      silentSince = undefined;
      return outcome.kind === "gone" || outcome.status !== 1 ? "done" : undefined;
    });
    await removeTaskFiles(instance.tempDir, code).catch(() => undefined);
    instance.release();
    if (end === "unreachable") instance.markUnhealthy(`HeyGem instance ${instance.name} stopped answering`);
    log?.info({ instance: instance.name, code, end }, "the HeyGem task of a finished job is over");
  }

  private keep(work: Promise<void>, log: Logger | undefined): void {
    const tracked = work.catch((err: unknown) => {
      if (err instanceof EngineError) return;
      log?.debug({ err: errorMessage(err) }, "stopped following a HeyGem task");
    });
    this.orphans.add(tracked);
    tracked.finally(() => this.orphans.delete(tracked)).catch(() => undefined);
  }

  private limitMs(state: HeygemResumeState): number {
    const { settings } = this.options;
    return settings.timeoutBaseMs + settings.timeoutPerAudioSecondMs * (state.audio_sec ?? 0);
  }

  private async waitForRelease(ms: number, signal: AbortSignal): Promise<void> {
    const released = new AbortController();
    const wake = () => released.abort();
    this.releaseWaiters.add(wake);
    try {
      await delay(ms, undefined, { signal: AbortSignal.any([signal, released.signal]) });
    } catch (err) {
      if (signal.aborted) throw err;
    } finally {
      this.releaseWaiters.delete(wake);
    }
  }
}

async function isPlayableVideo(path: string): Promise<boolean> {
  if (!(await isNonEmptyFile(path))) return false;
  try {
    return (await probeMedia(path)).video !== undefined;
  } catch {
    return false;
  }
}

/** The registry's entry point: the settings come from the worker's configuration (--heygem, worker.json). */
export function createHeygemEngine(settings: HeygemSettings | undefined, logger?: Logger): HeygemEngine {
  if (!settings) {
    throw new RangeError("the heygem engine needs at least one instance: --heygem URL=DATA_DIR");
  }
  return new HeygemEngine({ settings, logger });
}
