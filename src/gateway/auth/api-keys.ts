import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import { readJsonFile, validateSettings } from "../../config/json-file.js";
import { ConfigError } from "../../errors.js";

/**
 * The API keys file (`--api-keys`, issue 9): who may call the gateway, as names, roles and the
 * SHA-256 of each key. Only hashes are on disk, so the file can be read, copied and backed up
 * without handing out a key.
 */

export const ROLES = ["submit", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** What a request was authenticated as; `name` becomes the owner of the tasks it creates. */
export interface ApiKey {
  readonly name: string;
  readonly role: Role;
}

const KeyEntry = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }),
    sha256: Type.String(),
    role: Type.String(),
  },
  { additionalProperties: false },
);
export const ApiKeysFile = Type.Object({ keys: Type.Array(KeyEntry) }, { additionalProperties: false });
export type ApiKeysFile = Static<typeof ApiKeysFile>;
export type KeyEntry = Static<typeof KeyEntry>;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

/** Issued keys start with this, so a leaked one is recognisable in logs and secret scanners. */
export const KEY_PREFIX = "mhk_";

/** A new key: 32 bytes from the system's CSPRNG. */
export function generateKey(): string {
  return `${KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/** What the file stores for `key`: `printf %s "$KEY" | sha256sum` gives the same. */
export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Reads and checks a keys file; every problem is a ConfigError naming the file and the field. */
export function loadApiKeysFile(path: string): ApiKeysFile {
  return parseApiKeys(readJsonFile(path), path);
}

export function parseApiKeys(raw: unknown, source: string): ApiKeysFile {
  const file = validateSettings(ApiKeysFile, raw, source);
  const names = new Set<string>();
  const hashes = new Set<string>();
  file.keys.forEach((key, i) => {
    if (!HEX_SHA256.test(key.sha256)) {
      throw new ConfigError(
        source,
        `keys[${i}].sha256`,
        "must be the SHA-256 of the key as 64 lowercase hex digits (never the key itself)",
      );
    }
    if (!(ROLES as readonly string[]).includes(key.role)) {
      throw new ConfigError(
        source,
        `keys[${i}].role`,
        `"${key.role}" is not a role (allowed: ${ROLES.join(", ")})`,
      );
    }
    if (names.has(key.name)) throw new ConfigError(source, `keys[${i}].name`, `duplicate name "${key.name}"`);
    if (hashes.has(key.sha256)) {
      throw new ConfigError(source, `keys[${i}].sha256`, "the same key hash is listed twice");
    }
    names.add(key.name);
    hashes.add(key.sha256);
  });
  return file;
}

/** A checked keys file, ready to tell who sent a key. */
export class ApiKeySet {
  private readonly entries: readonly { key: ApiKey; digest: Buffer }[];

  constructor(file: ApiKeysFile) {
    this.entries = file.keys.map((entry) => ({
      key: Object.freeze({ name: entry.name, role: entry.role as Role }),
      digest: Buffer.from(entry.sha256, "hex"),
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * The key `presented` is, or undefined. Every entry is compared, in constant time, whatever
   * matched: how long this takes tells nothing about which hash came close.
   */
  find(presented: string): ApiKey | undefined {
    const digest = createHash("sha256").update(presented, "utf8").digest();
    let found: ApiKey | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.key;
    }
    return found;
  }
}
