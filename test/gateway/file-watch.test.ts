import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileWatch } from "../../src/gateway/file-watch.js";
import { createLogger } from "../../src/logger.js";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { until } from "../helpers/until.js";

/**
 * An edit this host's folder watch never hears of, as one made on another host of a shared folder
 * (NFS) is not: here, the file is a link into another folder, whose edits raise no event in the
 * watched one. Only the look at the file's signature every `pollMs` sees it.
 */
describe("watching a settings file on a shared folder", () => {
  let dir: string;
  const watches: FileWatch[] = [];
  beforeEach(async () => {
    dir = await tempDir("mh-file-watch-");
    await mkdir(join(dir, "elsewhere"));
    await mkdir(join(dir, "watched"));
    await writeFile(join(dir, "elsewhere", "machines.json"), '{"machines":[]}');
    await symlink(join(dir, "elsewhere", "machines.json"), join(dir, "watched", "machines.json"));
  });
  afterEach(async () => {
    for (const w of watches.splice(0)) w.close();
    await removeDir(dir);
  });

  const watch = (pollMs: number, onEdit: () => void) => {
    const w = new FileWatch(
      join(dir, "watched", "machines.json"),
      onEdit,
      createLogger({ level: "silent" }),
      {
        pollMs,
        debounceMs: 10,
      },
    );
    w.start();
    watches.push(w);
    return w;
  };

  it("sees an edit that raised no event in its folder by looking at the file", async () => {
    let edits = 0;
    let unpolledEdits = 0;
    watch(20, () => edits++);
    watch(0, () => unpolledEdits++);
    // Both have taken their first look before the edit.
    await sleep(100);
    await writeFile(join(dir, "elsewhere", "machines.json"), '{"machines":[{"name":"gpu-1"}]}');
    await until(() => edits === 1, 10_000);
    // The watch that does not look never heard of it (it had every chance: the other saw it).
    expect(unpolledEdits).toBe(0);
  });
});
