import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { CLI, killAll, run, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";

/** Issue 9, "clear faults": a data dir belongs to one process, and a lost or corrupt store stops the start. */
describe("the data dir", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await killAll();
    await removeDir(dir);
  });

  const gateway = (dataDir: string) =>
    run(process.execPath, [CLI, "gateway", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir], {
      cwd: dir,
    });

  /** One line on stderr, exit code 2: what the operator sees. */
  function expectOneLineExit(res: { code: number | null; stderr: string }, pattern: RegExp): void {
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split("\n");
    expect(lines, res.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(res.stderr).not.toMatch(/\n\s+at /);
  }

  it("a second gateway on a data dir in use exits with one line naming the first", async () => {
    const data = join(dir, "data");
    const first = await startGatewayProcess(["--data-dir", data], { cwd: dir });
    const res = await gateway(data);
    expectOneLineExit(res, new RegExp(`is in use by another gateway \\(pid ${first.child.pid} `));
  });

  it("a second worker on a data dir in use exits with one line; the dir is free again once the first is gone", async () => {
    const data = join(dir, "worker-data");
    const first = await startWorkerProcess(["--data-dir", data]);
    const args = [CLI, "worker", "--host", "127.0.0.1", "--port", "0", "--data-dir", data];
    expectOneLineExit(await run(process.execPath, args), /is in use by another worker/);
    // kill -9: the lock goes with the process, nothing stale is left to clean up.
    await first.kill();
    const second = await startWorkerProcess(["--data-dir", data]);
    expect(second.url).toMatch(/^http:/);
  });

  it("a data dir that cannot be made exits with one line naming --data-dir, gateway and worker alike", async () => {
    const file = join(dir, "a-file");
    await writeFile(file, "");
    // Under a file; and under /proc, where Node's own recursive mkdir spins for ever (make-dir.ts).
    const places = [join(file, "data")];
    if (existsSync("/proc/self")) places.push(`/proc/mh-test-${process.pid}/data`);
    for (const data of places) {
      const quick = { cwd: dir, timeoutMs: 30_000 };
      expectOneLineExit(
        await run(
          process.execPath,
          [CLI, "gateway", "--host", "127.0.0.1", "--port", "0", "--data-dir", data],
          quick,
        ),
        new RegExp(
          `^multi-heygem: ${data}: cannot make the data dir \\((ENOTDIR|ENOENT)\\); check --data-dir$`,
        ),
      );
      expectOneLineExit(
        await run(
          process.execPath,
          [CLI, "worker", "--host", "127.0.0.1", "--port", "0", "--data-dir", data],
          quick,
        ),
        /cannot make the data dir \((ENOTDIR|ENOENT)\); check --data-dir$/,
      );
    }
  });

  it("a 0-byte store beside blobs stops the start, and the store is left as it was", async () => {
    const data = join(dir, "data");
    await mkdir(join(data, "blobs", "ab"), { recursive: true });
    await writeFile(join(data, "blobs", "ab", "ab".repeat(32)), "a template");
    await writeFile(join(data, "multi-heygem.db"), "");
    expectOneLineExit(await gateway(data), /multi-heygem\.db is empty but .*blobs holds files/);
    expect((await stat(join(data, "multi-heygem.db"))).size).toBe(0);
  });

  it("a corrupt store stops the start with one line, and is not overwritten", async () => {
    const data = join(dir, "data");
    await mkdir(data, { recursive: true });
    const garbage = Buffer.from("this is not a database, but it was somebody's store once\n".repeat(200));
    await writeFile(join(data, "multi-heygem.db"), garbage);
    expectOneLineExit(await gateway(data), /is not a readable SQLite database \(SQLITE_NOTADB\)/);
    const after = await readFile(join(data, "multi-heygem.db"));
    expect(createHash("sha256").update(after).digest("hex")).toBe(
      createHash("sha256").update(garbage).digest("hex"),
    );
  });
});
