import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { makeDir, makeDirSync } from "../src/make-dir.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0)) await fn();
});

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mh-make-dir-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const makers = [
  ["makeDir", makeDir],
  ["makeDirSync", async (path: string) => makeDirSync(path)],
] as const;

describe.each(makers)("%s", (_name, make) => {
  it("makes every missing folder of a path, and is content with one that is there", async () => {
    const dir = await scratch();
    const deep = join(dir, "a", "b", "c");
    await make(deep);
    expect((await stat(deep)).isDirectory()).toBe(true);
    await make(deep);
    await make(join(dir, "a"));
  });

  it("makes the same folders from many callers at once", async () => {
    const dir = await scratch();
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => make(join(dir, "shared", "parent", String(i % 3)))),
    );
    expect(readdirSync(join(dir, "shared", "parent")).sort()).toEqual(["0", "1", "2"]);
  });

  it("refuses a file in the way, as mkdir -p does", async () => {
    const dir = await scratch();
    const file = join(dir, "file");
    await writeFile(file, "");
    await expect(make(file)).rejects.toMatchObject({ code: "EEXIST" });
    await expect(make(join(file, "below"))).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  // Node's { recursive: true } never settles here: it spins between the parent (EEXIST) and the child (ENOENT).
  it.skipIf(!existsSync("/proc/self"))(
    "refuses a path under /proc with ENOENT instead of spinning",
    async () => {
      await expect(make(`/proc/mh-make-dir-${process.pid}/x/y`)).rejects.toMatchObject({ code: "ENOENT" });
    },
  );
});

describe("folders in src/", () => {
  it("are all made through make-dir.ts, never Node's recursive mkdir", () => {
    const src = fileURLToPath(new URL("../src/", import.meta.url));
    const offenders = readdirSync(src, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith(".ts") && e.name !== "make-dir.ts")
      .map((e) => join(e.parentPath, e.name))
      .filter((path) => /mkdir(Sync)?\([^)]*recursive/.test(readFileSync(path, "utf8")));
    expect(offenders).toEqual([]);
  });
});
