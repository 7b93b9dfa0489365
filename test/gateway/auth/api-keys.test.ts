import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ApiKeySet, generateKey, hashKey, parseApiKeys } from "../../../src/gateway/auth/api-keys.js";

describe("API keys", () => {
  it("makes keys of 32 random bytes, each different, hashed as sha256sum hashes them", () => {
    const keys = new Set(Array.from({ length: 100 }, generateKey));
    expect(keys.size).toBe(100);
    const key = [...keys][0] ?? "";
    expect(key).toMatch(/^mhk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key.slice(4), "base64url")).toHaveLength(32);
    const sha256sum = execFileSync("sha256sum", { input: key }).toString().split(" ")[0];
    expect(hashKey(key)).toBe(sha256sum);
  });

  it("finds the key a request presents, and nothing for any other text", () => {
    const shop = generateKey();
    const boss = generateKey();
    const set = new ApiKeySet(
      parseApiKeys(
        {
          keys: [
            { name: "shop", sha256: hashKey(shop), role: "submit" },
            { name: "boss", sha256: hashKey(boss), role: "admin" },
          ],
        },
        "keys.json",
      ),
    );
    expect(set.find(shop)).toEqual({ name: "shop", role: "submit" });
    expect(set.find(boss)).toEqual({ name: "boss", role: "admin" });
    for (const other of ["", `${shop} `, shop.slice(0, -1), hashKey(shop), shop.toUpperCase()]) {
      expect(set.find(other)).toBeUndefined();
    }
  });

  it("refuses an uppercase hash: the file holds one spelling per key, so duplicates are caught", () => {
    expect(() =>
      parseApiKeys({ keys: [{ name: "a", sha256: "A".repeat(64), role: "admin" }] }, "keys.json"),
    ).toThrow(/keys\.json: keys\[0\]\.sha256: must be/);
  });
});
