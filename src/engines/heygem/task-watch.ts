import { errorMessage } from "../../errors.js";
import type { QueryReply } from "./heygem-api.js";

export interface TaskWatchLimits {
  /** No change of progress (or of the step's words) for this long is a stall. */
  readonly stallMs: number;
  /** Epoch ms past which the task is overdue; undefined when the audio's length is unknown. */
  readonly deadlineAt: number | undefined;
  /** How long the container may fail to answer before the task is given up. */
  readonly unreachableGraceMs: number;
}

/** What one query (or its failure) means for the task being followed. */
export type Verdict =
  | { readonly kind: "running"; readonly progress: number; readonly msg: string; readonly changed: boolean }
  /** No answer (or an error code) within the grace: ask again. */
  | { readonly kind: "waiting"; readonly error: string }
  | { readonly kind: "succeeded"; readonly result: string; readonly msg: string }
  | { readonly kind: "failed"; readonly msg: string }
  /** 10004: the container no longer knows the code. */
  | { readonly kind: "gone" }
  | { readonly kind: "stalled"; readonly progress: number; readonly msg: string; readonly forMs: number }
  | { readonly kind: "overdue"; readonly progress: number; readonly msg: string }
  | { readonly kind: "unreachable"; readonly error: string; readonly forMs: number };

export type FinalVerdict = Exclude<Verdict, { kind: "running" } | { kind: "waiting" }>;

export function isFinal(verdict: Verdict): verdict is FinalVerdict {
  return verdict.kind !== "running" && verdict.kind !== "waiting";
}

/**
 * Judges a submitted task from its successive `/easy/query` answers. HeyGem hangs while still
 * answering status 1 (stuck at 5 % without a GPU, at 20 % out of memory: heygem-contract.md,
 * "Failure modes"), so besides the final statuses this watches for a stall and an overall
 * deadline. Pure: time comes in with each observation.
 */
export class TaskWatch {
  private progress = -1;
  private msg = "";
  private lastChangeAt: number;
  private silentSince: number | undefined;

  constructor(
    private readonly limits: TaskWatchLimits,
    startedAt: number,
  ) {
    this.lastChangeAt = startedAt;
  }

  observe(outcome: QueryReply | Error, now: number): Verdict {
    if (outcome instanceof Error || outcome.kind === "error") {
      const error =
        outcome instanceof Error ? errorMessage(outcome) : `HeyGem error ${outcome.code}: ${outcome.msg}`;
      this.silentSince ??= now;
      const forMs = now - this.silentSince;
      if (forMs >= this.limits.unreachableGraceMs) return { kind: "unreachable", error, forMs };
      return this.timers(now) ?? { kind: "waiting", error };
    }
    this.silentSince = undefined;
    if (outcome.kind === "gone") return { kind: "gone" };
    if (outcome.status === 2) return { kind: "succeeded", result: outcome.result, msg: outcome.msg };
    if (outcome.status === 3) return { kind: "failed", msg: outcome.msg };
    const changed = outcome.progress !== this.progress || outcome.msg !== this.msg;
    if (changed) {
      this.progress = outcome.progress;
      this.msg = outcome.msg;
      this.lastChangeAt = now;
    }
    return this.timers(now) ?? { kind: "running", progress: outcome.progress, msg: outcome.msg, changed };
  }

  private timers(now: number): Verdict | undefined {
    const progress = Math.max(0, this.progress);
    const forMs = now - this.lastChangeAt;
    if (forMs >= this.limits.stallMs) return { kind: "stalled", progress, msg: this.msg, forMs };
    if (this.limits.deadlineAt !== undefined && now >= this.limits.deadlineAt) {
      return { kind: "overdue", progress, msg: this.msg };
    }
    return undefined;
  }
}

/** Whole seconds for messages, or tenths below ten, so that short limits still read sensibly. */
export function seconds(ms: number): string {
  return ms >= 10_000 ? String(Math.round(ms / 1000)) : (ms / 1000).toFixed(1);
}
