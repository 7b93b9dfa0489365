import { describe, expect, it } from "vitest";
import { SpeedModel } from "../../src/gateway/speed-model.js";

describe("SpeedModel", () => {
  it("uses the prior before anything is measured, then the fleet's mean for unmeasured machines", () => {
    const model = new SpeedModel(3);
    expect(model.speed("a")).toBe(3);
    model.observe("a", 2);
    model.observe("b", 4);
    expect(model.speed("a")).toBe(2);
    expect(model.speed("new")).toBe(3);
    expect(model.measured("new")).toBeUndefined();
  });

  it("follows a machine that slows down within a few jobs, and ignores nonsense", () => {
    const model = new SpeedModel(1, 0.5);
    model.observe("a", 1);
    for (let i = 0; i < 6; i++) model.observe("a", 5);
    expect(model.speed("a")).toBeGreaterThan(4.8);
    model.observe("a", Number.NaN);
    model.observe("a", -1);
    expect(model.measured("a")?.samples).toBe(7);
  });
});
