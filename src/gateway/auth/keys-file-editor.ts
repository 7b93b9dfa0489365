import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { open, rename } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ConfigError } from "../../errors.js";
import { removeFile } from "../../remove-file.js";
import {
  type ApiKeysFile,
  generateKey,
  hashKey,
  type KeyEntry,
  loadApiKeysFile,
  ROLES,
  type Role,
} from "./api-keys.js";

/**
 * `multi-heygem keys add|list|remove`: the operator's way to change the keys file. Every change
 * is written to a temp file beside it and renamed over it, so the gateway watching the folder
 * never reads half a file, and the file is created readable by its owner only (0600).
 */

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/** Adds a key called `name` and returns it: the only time it exists outside its holder. */
export async function addKey(file: string, name: string, role: string): Promise<string> {
  if (!NAME.test(name)) {
    throw new ConfigError("--name", "", `"${name}" is not a name (1–100 of A-Z a-z 0-9 _ . -)`);
  }
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new ConfigError("--role", "", `"${role}" is not one of ${ROLES.join(", ")}`);
  }
  const current = readOrEmpty(file);
  if (current.keys.some((k) => k.name === name)) {
    throw new ConfigError(
      "--name",
      "",
      `${file} already has a key named "${name}"; remove it first (keys remove --name ${name}) or choose another name`,
    );
  }
  const key = generateKey();
  const entry: KeyEntry = { name, sha256: hashKey(key), role: role as Role };
  await writeKeysFile(file, { keys: [...current.keys, entry] });
  return key;
}

/** Removes the key called `name`; its holder gets 401 once the gateway has re-read the file. */
export async function removeKey(file: string, name: string): Promise<void> {
  const current = loadApiKeysFile(file);
  const keys = current.keys.filter((k) => k.name !== name);
  if (keys.length === current.keys.length)
    throw new ConfigError("--name", "", `${file} has no key named "${name}"`);
  await writeKeysFile(file, { keys });
}

export function listKeys(file: string): readonly KeyEntry[] {
  return loadApiKeysFile(file).keys;
}

function readOrEmpty(file: string): ApiKeysFile {
  return existsSync(file) ? loadApiKeysFile(file) : { keys: [] };
}

async function writeKeysFile(file: string, content: ApiKeysFile): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  // "wx": never follow or reuse something already at the temp name.
  const handle = await open(temp, "wx", 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(file, "", `cannot write its folder (${err.code ?? err.message})`);
  });
  try {
    await handle.writeFile(`${JSON.stringify(content, null, 2)}\n`);
    await handle.sync();
    await handle.close();
    await rename(temp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await removeFile(temp);
    throw err;
  }
}
