import { describe, expect, it } from "vitest";
import { retryDelayMs } from "../../src/http/webhook-retry-schedule.js";

const MIN = 60_000;
const HOUR = 60 * MIN;

describe("the callback retry schedule", () => {
  it("is Standard Webhooks' after the first try, with the default first delay", () => {
    const delays = [1, 2, 3, 4, 5, 6, 7].map((tries) => retryDelayMs(tries, 5000));
    expect(delays).toEqual([5000, 5 * MIN, 30 * MIN, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR]);
  });

  it("scales with --callback-retry and repeats its last delay past its end", () => {
    expect(retryDelayMs(1, 50)).toBe(50);
    expect(retryDelayMs(2, 50)).toBe(3000);
    expect(retryDelayMs(12, 5000)).toBe(10 * HOUR);
  });
});
