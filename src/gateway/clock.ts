/** A timer a Clock started. Cancelling it twice, or after it fired, is harmless. */
export interface Timer {
  cancel(): void;
}

/**
 * Where the gateway's time comes from: every time read and every timer of the fleet, dispatcher,
 * scheduler, deadline, callbacks and waiters goes through one of these, passed down from
 * `startGateway`, so a test can drive grace periods, deadlines and backoffs with a fake clock
 * instead of waiting for them (house-style.md: time comes in through small injectable functions).
 *
 * Its timers never keep the process alive on their own: what keeps the gateway running is its
 * HTTP server, and every timer is cancelled on close.
 */
export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
  /** A signal that aborts with a `TimeoutError` after `ms`, as `AbortSignal.timeout`. */
  timeoutSignal(ms: number): AbortSignal;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms).unref();
    return { cancel: () => clearTimeout(timer) };
  },
  setInterval(fn, ms) {
    const timer = setInterval(fn, ms).unref();
    return { cancel: () => clearInterval(timer) };
  },
  timeoutSignal: (ms) => AbortSignal.timeout(ms),
};

/** Resolves after `ms` on `clock`, or at once when `signal` aborts (never rejects). */
export function delay(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      timer.cancel();
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
