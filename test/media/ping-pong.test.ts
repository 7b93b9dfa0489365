import { describe, expect, it } from "vitest";
import { backwardChunks } from "../../src/media/ping-pong.js";

describe("backwardChunks", () => {
  it.each([
    [2, 60],
    [3, 60],
    [25, 8],
    [61, 60],
    [62, 60],
    [1500, 60],
  ])("covers frames N-2 down to 1 once, in chunks of at most the size (N=%i, size=%i)", (frames, size) => {
    const chunks = backwardChunks(frames, size);
    const order = chunks.flatMap(([first, end]) =>
      Array.from({ length: end - first }, (_, i) => end - 1 - i),
    );
    const expected = Array.from({ length: Math.max(0, frames - 2) }, (_, i) => frames - 2 - i);
    expect(order).toEqual(expected);
    expect(chunks.every(([first, end]) => end - first <= size && end > first)).toBe(true);
  });

  it("starts every chunk but the first on a multiple of the size, where the keyframes are", () => {
    const starts = backwardChunks(130, 60).map(([first]) => first);
    expect(starts).toEqual([120, 60, 1]);
  });
});
