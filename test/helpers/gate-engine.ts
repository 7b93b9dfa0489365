import { writeFile } from "node:fs/promises";
import type { Engine, EngineJob, EngineRunContext, ResumeState } from "../../src/engines/engine.js";
import { EngineError, type FailureKind } from "../../src/errors.js";

type Verdict = { ok: true; output: Buffer } | { ok: false; kind: FailureKind; message: string };

interface GateRun {
  readonly job: EngineJob;
  readonly ctx: EngineRunContext;
  decide(verdict: Verdict): void;
}

/**
 * An engine the test steers: every run waits at a gate until the test releases it (writing a
 * small output file), fails it with an EngineError of a chosen kind, or the run's signal aborts.
 * Queueing and concurrency can then be checked step by step, without timing.
 */
export class GateEngine implements Engine {
  readonly name = "gate";
  /** Every job the engine was given, in start order. */
  readonly started: EngineJob[] = [];
  /** The most runs that were ever in flight at once: the capacity invariant to check. */
  maxInFlight = 0;
  private readonly live = new Map<string, GateRun>();

  constructor(readonly capacity = 1) {}

  /** Ids of the runs now waiting at the gate. */
  get running(): string[] {
    return [...this.live.keys()];
  }

  isRunning(id: string): boolean {
    return this.live.has(id);
  }

  run(job: EngineJob, ctx: EngineRunContext): Promise<void> {
    this.started.push(job);
    return new Promise<void>((resolve, reject) => {
      const end = () => {
        this.live.delete(job.id);
        ctx.signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        end();
        reject(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error("aborted"));
      };
      const decide = (verdict: Verdict) => {
        end();
        if (!verdict.ok) {
          reject(new EngineError(verdict.kind, verdict.message));
          return;
        }
        writeFile(job.outputPath, verdict.output).then(resolve, reject);
      };
      if (ctx.signal.aborted) {
        onAbort();
        return;
      }
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      this.live.set(job.id, { job, ctx, decide });
      this.maxInFlight = Math.max(this.maxInFlight, this.live.size);
    });
  }

  /** Lets a waiting run finish with `output` as its MP4. */
  release(id: string, output: Buffer = Buffer.from(`result of ${id}`)): void {
    this.gate(id).decide({ ok: true, output });
  }

  fail(id: string, kind: FailureKind, message: string): void {
    this.gate(id).decide({ ok: false, kind, message });
  }

  progress(id: string, progress: number, message?: string): void {
    this.gate(id).ctx.onProgress(progress, message);
  }

  /** Says the backend took the job (for engines with `startsWhenAccepted`), with a resume state. */
  accept(id: string, resume?: ResumeState): void {
    this.gate(id).ctx.onAccepted?.(resume);
  }

  private gate(id: string): GateRun {
    const run = this.live.get(id);
    if (!run)
      throw new Error(`job ${id} is not waiting at the gate (running: ${this.running.join(", ") || "none"})`);
    return run;
  }
}
