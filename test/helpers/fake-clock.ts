import type { Clock, Timer } from "../../src/gateway/clock.js";

interface Scheduled {
  readonly seq: number;
  at: number;
  readonly fn: () => void;
  /** Set for intervals: they come due again this much later. */
  readonly every: number | undefined;
  cancelled: boolean;
}

/**
 * A Clock that moves only when a test says so. `advance` fires every timer that falls due on the
 * way, in order, each with `now()` at its own due time, so a grace period or a deadline is crossed
 * in one call instead of waited for. Timers start synchronous work; what they start
 * asynchronously (a probe, a store query) is waited for with `until()`.
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private timers: Scheduled[] = [];

  constructor(start = Date.parse("2025-01-01T00:00:00.000Z")) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    // A zero interval would come due forever within one instant.
    return this.schedule(fn, ms, Math.max(1, ms));
  }

  timeoutSignal(ms: number): AbortSignal {
    const controller = new AbortController();
    this.setTimeout(
      () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
      ms,
    );
    return controller.signal;
  }

  /** Moves time forward by `ms`, firing what falls due on the way. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const next = this.nextDue(end);
      if (!next) break;
      this.time = next.at;
      if (next.every === undefined) next.cancelled = true;
      else next.at += next.every;
      next.fn();
    }
    this.time = end;
    this.timers = this.timers.filter((t) => !t.cancelled);
  }

  /** Timers still waiting to fire. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  private schedule(fn: () => void, ms: number, every: number | undefined): Timer {
    const timer: Scheduled = {
      seq: this.seq++,
      at: this.time + Math.max(0, ms),
      fn,
      every,
      cancelled: false,
    };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  private nextDue(end: number): Scheduled | undefined {
    let best: Scheduled | undefined;
    for (const t of this.timers) {
      if (t.cancelled || t.at > end) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
