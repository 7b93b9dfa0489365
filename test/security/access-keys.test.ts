import { createHash } from "node:crypto";
import { mkdir, readFile, rename, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, run, startGatewayProcess } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

/** Issue 9, "API keys": the keys file, the `keys` command that writes it, and its hot reload. */
describe("the API keys file", () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await tempDir();
    file = join(dir, "keys.json");
  });
  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  const keys = (...args: string[]) => run(process.execPath, [CLI, "keys", ...args], { cwd: dir });
  const gatewayArgs = () => ["--data-dir", join(dir, "data"), "--api-keys", file];

  it("keys add prints a working key once and stores only its hash, in a file only its owner reads", async () => {
    const added = await keys("add", "--name", "shop", "--role", "submit", "--file", file);
    expect(added.code, added.stderr).toBe(0);
    const key = added.stdout.trim();
    expect(key).toMatch(/^mhk_[A-Za-z0-9_-]{43}$/);
    expect(added.stdout).toBe(`${key}\n`);

    const text = await readFile(file, "utf8");
    expect(text).not.toContain(key);
    expect(text).not.toContain(key.slice(4));
    expect(JSON.parse(text)).toEqual({
      keys: [{ name: "shop", role: "submit", sha256: createHash("sha256").update(key).digest("hex") }],
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const again = await keys("add", "--name", "shop", "--role", "admin", "--file", file);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already has a key named "shop"');
    expect(await readFile(file, "utf8")).toBe(text);

    const second = await keys("add", "--name", "boss", "--role", "admin", "--file", file);
    expect(second.stdout.trim()).not.toBe(key);
    const listed = await keys("list", "--file", file);
    expect(listed.stdout).toMatch(
      /^shop\tsubmit\tsha256:[0-9a-f]{12}…\nboss\tadmin\tsha256:[0-9a-f]{12}…\n$/,
    );

    const gateway = await startGatewayProcess(gatewayArgs(), { cwd: dir });
    expect((await fetch(`${gateway.url}/tasks`, { headers: bearer(key) })).status).toBe(200);
    expect((await fetch(`${gateway.url}/machines`, { headers: bearer(key) })).status).toBe(403);
    expect((await fetch(`${gateway.url}/machines`, { headers: bearer(second.stdout.trim()) })).status).toBe(
      200,
    );
  });

  it.each<[string, unknown, RegExp]>([
    ["an unknown field", { keys: [], extra: 1 }, /: extra: unknown setting/],
    [
      "a key's unknown field",
      { keys: [{ name: "a", sha256: "a".repeat(64), role: "admin", key: "x" }] },
      /keys\[0\]\.key: /,
    ],
    [
      "a bad role",
      { keys: [{ name: "a", sha256: "a".repeat(64), role: "root" }] },
      /keys\[0\]\.role: "root" is not a role/,
    ],
    [
      "a hash that is not hex",
      { keys: [{ name: "a", sha256: "z".repeat(64), role: "admin" }] },
      /keys\[0\]\.sha256: must be/,
    ],
    ["a short hash", { keys: [{ name: "a", sha256: "ab", role: "admin" }] }, /keys\[0\]\.sha256: must be/],
    [
      "a duplicate name",
      {
        keys: [
          { name: "a", sha256: "a".repeat(64), role: "admin" },
          { name: "a", sha256: "b".repeat(64), role: "submit" },
        ],
      },
      /keys\[1\]\.name: duplicate name "a"/,
    ],
    [
      "a duplicate hash",
      {
        keys: [
          { name: "a", sha256: "a".repeat(64), role: "admin" },
          { name: "b", sha256: "a".repeat(64), role: "submit" },
        ],
      },
      /keys\[1\]\.sha256: the same key hash is listed twice/,
    ],
  ])("%s stops the gateway with one line naming the file and the field", async (_name, content, problem) => {
    await writeFile(file, JSON.stringify(content));
    const res = await run(
      process.execPath,
      [CLI, "gateway", "--host", "127.0.0.1", "--port", "0", ...gatewayArgs()],
      {
        cwd: dir,
      },
    );
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split("\n");
    expect(lines, res.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`multi-heygem: configuration error: ${file}: `);
    expect(lines[0]).toMatch(problem);
  });

  it("a missing keys file stops the gateway with one line", async () => {
    const res = await run(
      process.execPath,
      [CLI, "gateway", "--host", "127.0.0.1", "--port", "0", ...gatewayArgs()],
      {
        cwd: dir,
      },
    );
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(`multi-heygem: configuration error: ${file}: file not found\n`);
  });

  it("is re-read when it changes: a new key works without a restart, a broken edit keeps the last good set", async () => {
    const shop = testKey("shop", "submit");
    const later = testKey("later", "submit");
    await writeKeysFile(file, [shop]);
    const gateway = await startGatewayProcess(gatewayArgs(), { cwd: dir });
    const status = async (key: typeof shop) =>
      (await fetch(`${gateway.url}/tasks`, { headers: bearer(key) })).status;
    expect(await status(shop)).toBe(200);
    expect(await status(later)).toBe(401);

    await writeKeysFile(file, [shop, later]);
    await until(async () => (await status(later)) === 200, 10_000, { what: "the added key works" });

    // A broken edit (a second "shop", and an invalid JSON afterwards) is refused; the keys in force stay.
    const rejected = () => gateway.lines.filter((l) => l.includes("API keys file edit rejected")).length;
    await writeKeysFile(file, [shop, later, { ...testKey("shop", "admin"), key: "mhk_another" }]);
    await until(() => rejected() >= 1, 10_000, { what: "the duplicate is rejected" });
    await writeFile(file, "{ not json");
    await until(() => rejected() >= 2, 10_000, { what: "the broken JSON is rejected" });
    expect(await status(shop)).toBe(200);
    expect(await status(later)).toBe(200);
    expect(gateway.lines.find((l) => l.includes("API keys file edit rejected"))).toContain("duplicate name");

    // keys remove revokes a key without a restart (once the file is valid again).
    await writeKeysFile(file, [shop, later]);
    const removed = await keys("remove", "--name", "later", "--file", file);
    expect(removed.code, removed.stderr).toBe(0);
    await until(async () => (await status(later)) === 401, 10_000, { what: "the removed key is refused" });
    expect(await status(shop)).toBe(200);
  });

  it("follows a Kubernetes-style secret, whose update swaps a ..data symlink and names no file", async () => {
    const shop = testKey("shop", "submit");
    const later = testKey("later", "submit");
    await mkdir(join(dir, "v1"));
    await mkdir(join(dir, "v2"));
    await writeKeysFile(join(dir, "v1", "keys.json"), [shop]);
    await writeKeysFile(join(dir, "v2", "keys.json"), [shop, later]);
    await symlink("v1", join(dir, "..data"));
    await symlink(join("..data", "keys.json"), file);
    const gateway = await startGatewayProcess(gatewayArgs(), { cwd: dir });
    const status = async (key: typeof shop) =>
      (await fetch(`${gateway.url}/tasks`, { headers: bearer(key) })).status;
    expect(await status(later)).toBe(401);

    await symlink("v2", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await until(async () => (await status(later)) === 200, 10_000, { what: "the swapped secret is read" });
  });
});
