import { describe, expect, it } from "vitest";
import { createEngine, engineNames } from "../../src/engines/registry.js";

describe("engine registry", () => {
  it("builds the ffmpeg engine with the machine's max_concurrent as its capacity", () => {
    const engine = createEngine("ffmpeg", { maxConcurrent: 3 });
    expect(engine.name).toBe("ffmpeg");
    expect(engine.capacity).toBe(3);
    expect(createEngine("ffmpeg").capacity).toBe(1);
  });

  it("lists the engines it knows and names them when asked for another", () => {
    expect(engineNames()).toContain("ffmpeg");
    expect(() => createEngine("warp-drive")).toThrow(/unknown engine "warp-drive"; known engines: ffmpeg/);
  });
});
