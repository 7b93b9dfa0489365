import { describe, expect, it } from "vitest";
import { classifyFailure } from "../../../src/engines/heygem/failure-classes.js";

describe("HeyGem failure classes", () => {
  it.each([
    ["存在多人脸", "input", /more than one face/],
    ["format video error", "input", /cannot read the template video/],
    ["未检测到人脸", "input", /no face was found/],
    ["moov atom not found", "input", /unreadable or truncated/],
    ["三次获取音频时长失败", "machine", /wrong volume mapping/],
    ["CUDA out of memory", "machine", /GPU ran out of memory/],
  ] as const)(
    "%s is the %s's fault, kept in the engine's words with an explanation",
    (msg, kind, explanation) => {
      const failure = classifyFailure(msg);
      expect(failure.kind).toBe(kind);
      expect(failure.message).toContain(msg);
      expect(failure.message).toMatch(explanation);
    },
  );

  it("blames the machine for a message it does not know, so another machine may try", () => {
    expect(classifyFailure("something new")).toEqual({
      kind: "machine",
      message: "HeyGem failed: something new",
    });
    expect(classifyFailure("").message).toBe("HeyGem failed: (no message)");
  });
});
