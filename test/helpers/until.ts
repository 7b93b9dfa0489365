import { setTimeout as delay } from "node:timers/promises";

type Falsy = false | 0 | "" | null | undefined;

export interface UntilOptions {
  /** Between checks; small, since the checks are cheap and tests should not idle. */
  intervalMs?: number;
  /** Said in the timeout error, to tell which wait gave up. */
  what?: string;
}

/**
 * Polls `check` until it returns something truthy and returns that, instead of sleeping and
 * hoping (house-style.md, "No sleeps to wait for state"). A check that throws counts as "not
 * yet", so assertions and HTTP calls can be polled too; the last error is reported on timeout.
 */
export async function until<T>(
  check: () => T | Promise<T>,
  // A deadline, not an expectation: waits end as soon as the state is reached, and a 2-core CI
  // box running two test files and their child processes can be many times slower than a desk.
  timeoutMs = 30_000,
  options: UntilOptions = {},
): Promise<Exclude<T, Falsy>> {
  const deadline = Date.now() + timeoutMs;
  const intervalMs = options.intervalMs ?? 10;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as Exclude<T, Falsy>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? last.message : `last value: ${String(last)}`;
      throw new Error(
        `until${options.what ? ` (${options.what})` : ""}: gave up after ${timeoutMs} ms; ${why}`,
        {
          cause: last,
        },
      );
    }
    await delay(intervalMs);
  }
}
