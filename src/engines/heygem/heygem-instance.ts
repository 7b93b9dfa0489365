import { join } from "node:path";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { EngineInstanceHealth } from "../engine.js";
import { HeygemApi, type QueryReply, type SubmitReply, type SubmitRequest } from "./heygem-api.js";
import type { HeygemInstanceConfig } from "./heygem-settings.js";

/** A code nobody submits: querying it only proves the container answers (10004), and deletes nothing. */
const PROBE_CODE = "multi-heygem-probe";

export interface HeygemInstanceOptions {
  readonly config: HeygemInstanceConfig;
  readonly pollIntervalMs: number;
  readonly probeIntervalMs: number;
  readonly requestTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Called whenever the instance is released, so that jobs waiting for one can look again. */
  readonly onRelease?: () => void;
}

/** The instance was closed (the engine is shutting down) while a task was being followed. */
export class InstanceClosedError extends Error {
  constructor(name: string) {
    super(`HeyGem instance ${name} was closed`);
    this.name = "InstanceClosedError";
  }
}

/** Following was stopped on purpose (the agent stops and will resume the task after its restart). */
export class FollowStoppedError extends Error {
  constructor(code: string) {
    super(`stopped following HeyGem task ${code}`);
    this.name = "FollowStoppedError";
  }
}

interface Following {
  readonly code: string;
  /** Returns non-undefined once the task is settled for this follower; the value resolves `follow`. */
  readonly onReply: (outcome: QueryReply | Error) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

/**
 * One HeyGem gen-video container (`threaded=False`: one task at a time). It is held by at most one
 * task, and all its HTTP calls go through one serial loop: the first query that sees a task's final
 * status deletes the task in the container (heygem-contract.md, "GET /easy/query"), so two pollers
 * could steal each other's answer. When idle, the loop probes it now and then, which is how an
 * instance marked unhealthy comes back: it answers again.
 */
export class HeygemInstance {
  readonly name: string;
  readonly url: string;
  readonly dataDir: string;
  /** Where bare names in a submit resolve: `<data folder>/temp` is the container's /code/data/temp. */
  readonly tempDir: string;
  private readonly api: HeygemApi;
  private readonly log: Logger | undefined;
  private contacted = false;
  private reachable = false;
  private unhealthy: string | undefined;
  /** Unhealthy while a hung task still holds the container; answers do not clear it then. */
  private unhealthyUntilReleased = false;
  private lastError: string | undefined;
  private busyElsewhere = false;
  /** `orphaned`: the job is over for the agent, the container still renders its task. */
  private holder: { readonly jobId: string | undefined; readonly orphaned: boolean } | undefined;
  private following: Following | undefined;
  private lastProbeAt = Number.NEGATIVE_INFINITY;
  private probeWaiters: ((answered: boolean) => void)[] = [];
  private wake: (() => void) | undefined;
  private readonly stop = new AbortController();
  private chain: Promise<unknown> = Promise.resolve();
  private loopDone: Promise<void> | undefined;

  constructor(private readonly options: HeygemInstanceOptions) {
    this.name = options.config.name;
    this.url = options.config.url;
    this.dataDir = options.config.dataDir;
    this.tempDir = join(options.config.dataDir, "temp");
    this.api = new HeygemApi({ baseUrl: options.config.url, requestTimeoutMs: options.requestTimeoutMs });
    this.log = options.logger?.child({ instance: this.name });
  }

  /** Starts the loop; its first turn probes the container. */
  start(): void {
    this.loopDone ??= this.loop().catch((err: unknown) => {
      this.log?.error({ err }, "HeyGem instance loop died");
    });
  }

  get isFree(): boolean {
    return this.holder === undefined;
  }

  /** Known to answer and not marked unhealthy: new tasks may go here. */
  get isUsable(): boolean {
    return this.contacted && this.reachable && this.unhealthy === undefined;
  }

  /** Answered busy (10001) to our last submit: someone else (e.g. the desktop client) uses it. */
  get isBusyElsewhere(): boolean {
    return this.busyElsewhere;
  }

  /** Held by a task whose job is over (cancelled, or failed for hanging) until the container ends it. */
  get heldByOrphan(): boolean {
    return this.holder?.orphaned === true;
  }

  /** The job whose task holds the instance although the job is over, if any (for `held`). */
  get orphanedJob(): string | undefined {
    return this.holder?.orphaned ? this.holder.jobId : undefined;
  }

  get isHung(): boolean {
    return this.unhealthyUntilReleased;
  }

  tryReserve(jobId: string): boolean {
    if (this.holder !== undefined || this.stop.signal.aborted) return false;
    this.holder = { jobId, orphaned: false };
    return true;
  }

  /** The job is over for the agent but the container still renders its task: keep the instance. */
  orphan(): void {
    if (this.holder) this.holder = { jobId: this.holder.jobId, orphaned: true };
  }

  /** Undoes a `tryReserve` whose submit was not accepted; nobody waits for this. */
  cancelReservation(): void {
    this.holder = undefined;
  }

  /** The task that held the instance is over in the container: the next one may come. */
  release(): void {
    this.holder = undefined;
    if (this.unhealthyUntilReleased) {
      this.unhealthyUntilReleased = false;
      // The hung task ended with an answer (final status or 10004), so the container answers again.
      if (this.reachable) this.markHealthy();
    }
    this.options.onRelease?.();
  }

  /**
   * A machine-class failure: no new tasks go here until the container answers again, or, with
   * `untilReleased`, until the hung task that holds it is over.
   */
  markUnhealthy(reason: string, untilReleased = false): void {
    if (this.unhealthy === undefined) this.log?.warn({ reason }, "HeyGem instance marked unhealthy");
    this.unhealthy = reason;
    this.lastError = reason;
    if (untilReleased && this.holder !== undefined) this.unhealthyUntilReleased = true;
  }

  async submit(req: SubmitRequest, signal: AbortSignal): Promise<SubmitReply> {
    const reply = await this.exclusive(() => this.api.submit(req, signal)).catch((err: unknown) => {
      if (!signal.aborted) this.unanswered(err);
      throw err;
    });
    this.answered();
    this.busyElsewhere = reply.kind === "busy";
    if (reply.kind === "busy") this.lastError = `busy (${reply.code} ${reply.msg}): another client uses it`;
    return reply;
  }

  /**
   * Polls `code` every poll interval, handing each answer (or the error of a call that got none) to
   * `onReply`, until it returns something other than undefined, which this resolves with. One task
   * at a time; rejects with FollowStoppedError or InstanceClosedError when stopped.
   */
  follow<T>(code: string, onReply: (outcome: QueryReply | Error) => T | undefined): Promise<T> {
    if (this.following) throw new Error(`instance ${this.name} already follows ${this.following.code}`);
    if (this.stop.signal.aborted) return Promise.reject(new InstanceClosedError(this.name));
    return new Promise<T>((resolve, reject) => {
      this.following = { code, onReply, resolve: resolve as (value: unknown) => void, reject };
      this.wake?.();
    });
  }

  /** Stops following `code` without touching the task in the container. */
  stopFollowing(code: string): void {
    const following = this.following;
    if (following?.code !== code) return;
    this.following = undefined;
    following.reject(new FollowStoppedError(code));
  }

  /** Asks the loop to probe now; resolves with whether the container answered. */
  probeNow(): Promise<boolean> {
    if (this.stop.signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.probeWaiters.push(resolve);
      this.wake?.();
    });
  }

  health(): EngineInstanceHealth {
    return {
      name: this.name,
      reachable: this.reachable,
      healthy: this.isUsable,
      busy: this.holder !== undefined || this.busyElsewhere,
      ...(this.holder?.jobId === undefined || this.holder.orphaned ? {} : { job: this.holder.jobId }),
      ...(this.lastError === undefined ? {} : { last_error: this.lastError }),
    };
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.wake?.();
    await this.loopDone;
    const following = this.following;
    this.following = undefined;
    following?.reject(new InstanceClosedError(this.name));
    for (const waiter of this.probeWaiters.splice(0)) waiter(false);
  }

  private async loop(): Promise<void> {
    const { signal } = this.stop;
    while (!signal.aborted) {
      const following = this.following;
      if (following) {
        const outcome = await this.exclusive(() => this.api.query(following.code, signal)).catch(
          (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
        );
        if (signal.aborted) return;
        if (outcome instanceof Error) this.unanswered(outcome);
        else this.answered();
        for (const waiter of this.probeWaiters.splice(0)) waiter(!(outcome instanceof Error));
        // The task may have been let go of while the query was out; the answer is then nobody's.
        if (this.following === following) this.deliver(following, outcome);
        await this.nap(this.options.pollIntervalMs);
        continue;
      }
      const sinceProbe = Date.now() - this.lastProbeAt;
      if (this.probeWaiters.length > 0 || sinceProbe >= this.options.probeIntervalMs) {
        await this.probe();
        continue;
      }
      await this.nap(this.options.probeIntervalMs - sinceProbe);
    }
  }

  private deliver(following: Following, outcome: QueryReply | Error): void {
    let settled: unknown;
    try {
      settled = following.onReply(outcome);
    } catch (err) {
      this.following = undefined;
      following.reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (settled === undefined) return;
    this.following = undefined;
    following.resolve(settled);
  }

  private async probe(): Promise<void> {
    const waiters = this.probeWaiters.splice(0);
    let answered = false;
    try {
      await this.exclusive(() => this.api.query(PROBE_CODE, this.stop.signal));
      this.answered();
      answered = true;
    } catch (err) {
      if (!this.stop.signal.aborted) this.unanswered(err);
    }
    this.lastProbeAt = Date.now();
    for (const waiter of waiters) waiter(answered);
  }

  private answered(): void {
    if (!this.reachable && this.contacted) this.log?.info("HeyGem instance answers again");
    this.contacted = true;
    this.reachable = true;
    if (!this.unhealthyUntilReleased) this.markHealthy();
  }

  private markHealthy(): void {
    if (this.unhealthy !== undefined)
      this.log?.info({ was: this.unhealthy }, "HeyGem instance healthy again");
    this.unhealthy = undefined;
  }

  private unanswered(err: unknown): void {
    if (this.reachable || !this.contacted)
      this.log?.warn({ err: errorMessage(err) }, "HeyGem instance does not answer");
    this.contacted = true;
    this.reachable = false;
    this.lastError = errorMessage(err);
  }

  /** Calls to one container never overlap (it serves one request at a time anyway). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private nap(ms: number): Promise<void> {
    if (this.stop.signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      // Idle probing alone must not keep a process alive.
      timer.unref();
      this.wake = done;
    });
  }
}
