import { rename, writeFile } from "node:fs/promises";
import { hashKey } from "../../src/gateway/auth/api-keys.js";

/** Keys a test hands out: the key itself, and how the file stores it. */
export interface TestKey {
  name: string;
  role: string;
  key: string;
}

export function testKey(name: string, role: "submit" | "admin"): TestKey {
  return { name, role, key: `mhk_test_${name}_${"x".repeat(20)}` };
}

/** Writes a keys file the way `keys add` does (temp file, then rename), hashes only. */
export async function writeKeysFile(file: string, keys: readonly TestKey[]): Promise<void> {
  const content = { keys: keys.map((k) => ({ name: k.name, sha256: hashKey(k.key), role: k.role })) };
  await writeFile(`${file}.tmp`, JSON.stringify(content, null, 2));
  await rename(`${file}.tmp`, file);
}

export function bearer(key: TestKey | string): { authorization: string } {
  return { authorization: `Bearer ${typeof key === "string" ? key : key.key}` };
}
