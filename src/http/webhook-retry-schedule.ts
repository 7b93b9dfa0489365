/**
 * When a failed callback is tried again: Standard Webhooks' schedule after the first try, 5 s,
 * 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight tries over about 27 h), long enough to outlive a
 * receiver's maintenance window. `--callback-retry` is the first delay and the whole schedule
 * scales with it (the default, 5000 ms, is the standard; tests run it a hundred times faster);
 * `--callback-tries` caps the tries, and tries past the schedule wait its last delay again.
 */
export const STANDARD_RETRY_DELAYS_MS: readonly number[] = [
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3_600_000,
  5 * 3_600_000,
  10 * 3_600_000,
  10 * 3_600_000,
];

export const STANDARD_FIRST_DELAY_MS = 5_000;

/** The wait after the `triesDone`-th failed try (1-based). */
export function retryDelayMs(triesDone: number, firstDelayMs: number): number {
  const index = Math.min(Math.max(triesDone, 1), STANDARD_RETRY_DELAYS_MS.length) - 1;
  const standard = STANDARD_RETRY_DELAYS_MS[index] ?? STANDARD_FIRST_DELAY_MS;
  return Math.round((standard * firstDelayMs) / STANDARD_FIRST_DELAY_MS);
}
