import { describe, expect, it } from "vitest";
import { maskUrl } from "../../../src/gateway/callbacks/mask-url.js";

describe("maskUrl", () => {
  it.each([
    ["https://user:pass@hooks.example.com/path?token=abc", "https://***@hooks.example.com/path?***"],
    ["https://token@hooks.example.com/", "https://***@hooks.example.com/"],
    ["http://127.0.0.1:9000/hook?key=1#frag", "http://127.0.0.1:9000/hook?***#***"],
    ["http://hooks.example.com/plain", "http://hooks.example.com/plain"],
    ["not a url with a secret", "***"],
  ])("%s → %s", (url, shown) => {
    expect(maskUrl(url)).toBe(shown);
  });
});
