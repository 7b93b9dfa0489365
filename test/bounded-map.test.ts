import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BoundedMap } from "../src/bounded-map.js";

describe("BoundedMap", () => {
  it("keeps the `limit` keys set most recently, each with its last value", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer()), { maxLength: 60 }),
        (limit, sets) => {
          const map = new BoundedMap<number, number>(limit);
          for (const [key, value] of sets) map.set(key, value);
          // The model: the distinct keys in order of their last set, newest last.
          const order: number[] = [];
          const last = new Map<number, number>();
          for (const [key, value] of sets) {
            const at = order.indexOf(key);
            if (at >= 0) order.splice(at, 1);
            order.push(key);
            last.set(key, value);
          }
          const kept = order.slice(-limit);
          expect(map.size).toBe(kept.length);
          for (const key of kept) expect(map.get(key)).toBe(last.get(key));
          for (const key of order.slice(0, -limit)) expect(map.has(key)).toBe(false);
        },
      ),
    );
  });

  it("forgets a deleted key, and everything on clear", () => {
    const map = new BoundedMap<string, true>(2).set("a", true).set("b", true);
    expect(map.delete("a")).toBe(true);
    expect([map.has("a"), map.has("b"), map.size]).toEqual([false, true, 1]);
    map.clear();
    expect(map.size).toBe(0);
  });

  it("wants a limit of at least one", () => {
    expect(() => new BoundedMap(0)).toThrow(RangeError);
  });
});
