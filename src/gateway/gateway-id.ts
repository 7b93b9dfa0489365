import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

const FILE = "gateway-id";
const ID = /^[0-9a-f]{16}$/;

/**
 * This gateway's lasting name among the gateways that share a blob folder (issue 13): 16 random
 * hex digits, made at its first start and kept in its data dir, which no other running gateway
 * has (the data dir's lock). A restart keeps it, so the gateway clears the temp files it left
 * there when it died, and only those: the others are other gateways' uploads under way.
 */
export async function gatewayId(dataDir: string): Promise<string> {
  const file = join(dataDir, FILE);
  const kept = (await readFile(file, "utf8").catch(() => "")).trim();
  if (ID.test(kept)) return kept;
  const id = randomBytes(8).toString("hex");
  // Whole or not at all: a kill -9 midway must not leave half an id to be read next time.
  await writeFile(`${file}.tmp`, `${id}\n`);
  await rename(`${file}.tmp`, file);
  return id;
}
