import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir, readdir, readFile, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { filePart, multipartHead, openFiles, rawRequest } from "../helpers/raw-http.js";
import { until } from "../helpers/until.js";

/** Whether this machine lets the tests mount a tmpfs, and set the immutable attribute (as root). */
function works(setUp: (dir: string) => void, tearDown: (dir: string) => void): boolean {
  const dir = mkdtempSync(join(tmpdir(), "mh-probe-"));
  try {
    setUp(dir);
    tearDown(dir);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const tmpfsWorks = works(
  (dir) => execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], { stdio: "ignore" }),
  (dir) => execFileSync("umount", [dir], { stdio: "ignore" }),
);
const chattrWorks = works(
  (dir) => execFileSync("chattr", ["+i", dir], { stdio: "ignore" }),
  (dir) => execFileSync("chattr", ["-i", dir], { stdio: "ignore" }),
);

/**
 * Issue 9: uploads are refused with 507 under --min-free-disk or on a full disk, and a data dir
 * that vanishes or turns read-only at run time gives 503; never a 500, never a path. Tests run as
 * root, for whom chmod changes nothing: a read-only data dir is an immutable one (chattr +i), a
 * full disk a small tmpfs, each where this machine allows it (skipped otherwise).
 */
describe("storage faults", () => {
  let dir: string;
  let audio: Buffer;
  let video: Buffer;
  const mounts: string[] = [];
  const immutable: string[] = [];
  const B = "----storage-boundary";

  beforeEach(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    audio = await readFile(join(dir, "a.wav"));
    video = await readFile(join(dir, "v.mp4"));
  });
  afterEach(async () => {
    await killAll();
    for (const mount of mounts.splice(0)) execFileSync("umount", [mount]);
    for (const path of immutable.splice(0)) execFileSync("chattr", ["-i", path]);
    await removeDir(dir);
  });

  const form = (videoContent = video) =>
    Buffer.concat([
      filePart(B, "audio", "a.wav", audio),
      filePart(B, "video", "v.mp4", videoContent),
      Buffer.from(`--${B}--\r\n`),
    ]);
  const post = async (gateway: Started, route = "/tasks", body = form()) => {
    const answer = await rawRequest(gateway.url, multipartHead(route, B, body.length), body);
    const json = answer.text.slice(answer.text.indexOf("\r\n\r\n") + 4);
    return { status: answer.status, body: JSON.parse(json || "{}") as Record<string, string> };
  };
  const start = (data: string, ...flags: string[]) =>
    startGatewayProcess(["--data-dir", data, ...flags], { cwd: dir });

  /** A tmpfs of `size` at a new folder (tmpfsWorks says whether this machine allows it). */
  async function tmpfs(size: string): Promise<string> {
    const at = join(dir, `tmpfs-${mounts.length}`);
    await mkdir(at);
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", at], { stdio: "ignore" });
    mounts.push(at);
    return at;
  }

  it("refuses uploads with 507 when free disk is under --min-free-disk, storing nothing", async () => {
    const data = join(dir, "data");
    await mkdir(data);
    const fs = await statfs(data);
    const freeMiB = Math.floor((fs.bavail * fs.bsize) / (1024 * 1024));
    const gateway = await start(data, "--min-free-disk", String(freeMiB + 1024));
    for (const route of ["/tasks", "/tasks/sync"]) {
      const res = await post(gateway, route);
      expect(res.status, route).toBe(507);
      expect(res.body.error).toBe("INSUFFICIENT_STORAGE");
      expect(res.body.message).toMatch(/--min-free-disk/);
      expect(res.body.message).not.toContain(data);
    }
    expect(await readdir(join(data, "blobs", ".tmp"))).toEqual([]);
    expect((await readdir(join(data, "blobs"))).filter((n) => n !== ".tmp" && n !== ".trash")).toEqual([]);
  });

  it("a data dir removed under a running gateway makes changes 503 STORE_UNAVAILABLE; reads go on", async () => {
    const data = join(dir, "data");
    const gateway = await start(data, "--min-free-disk", "0");
    expect((await post(gateway)).status).toBe(200);
    // The embedded worker may be writing its job files meanwhile: rm retries on ENOTEMPTY.
    await rm(data, { recursive: true, force: true, maxRetries: 10 });

    for (const route of ["/tasks", "/tasks/sync"]) {
      const res = await post(gateway, route);
      expect(res.status, route).toBe(503);
      expect(res.body.error).toBe("STORE_UNAVAILABLE");
      expect(res.body.message).not.toContain(dir);
    }
    const drain = await fetch(`${gateway.url}/machines/embedded/drain`, { method: "POST" });
    expect(drain.status).toBe(503);
    expect(((await drain.json()) as { error: string }).error).toBe("STORE_UNAVAILABLE");
    expect((await fetch(`${gateway.url}/tasks`)).status).toBe(200);
  });

  it.skipIf(!chattrWorks)(
    "a data dir that turns read-only (immutable) makes changes 503 STORE_UNAVAILABLE",
    async () => {
      const data = join(dir, "data");
      const gateway = await start(data, "--min-free-disk", "0");
      expect((await post(gateway)).status).toBe(200);
      // Root ignores permission bits, not the immutable attribute (remounting read-only is refused
      // while the gateway holds files open for writing).
      execFileSync("chattr", ["+i", data]);
      immutable.push(data);

      const res = await post(gateway);
      expect(res.status).toBe(503);
      expect(res.body.error).toBe("STORE_UNAVAILABLE");
      expect(res.body.message).toMatch(/cannot be written \(EPERM\)/);
      expect(res.body.message).not.toContain(data);
      expect((await fetch(`${gateway.url}/tasks`)).status).toBe(200);
    },
  );

  it.skipIf(!tmpfsWorks)(
    "a disk that fills up during an upload answers 507 and leaves no open file and no temp file",
    async () => {
      const data = await tmpfs("6m");
      const gateway = await start(data, "--min-free-disk", "0");
      const pid = gateway.child.pid ?? 0;
      // Bigger than what is left of the 6 MB: the write runs out of space midway.
      const res = await post(gateway, "/tasks", form(Buffer.alloc(8 * 1024 * 1024, 1)));
      expect(res.status).toBe(507);
      expect(res.body.error).toBe("INSUFFICIENT_STORAGE");
      await until(async () => {
        const open = (await openFiles(pid)).filter((f) => f.includes(join(data, "blobs")));
        return open.length === 0 && (await readdir(join(data, "blobs", ".tmp"))).length === 0;
      }, 5000);
      // The space came back with the temp file, so a normal task goes through again.
      expect((await post(gateway)).status).toBe(200);
      await gateway.kill();
    },
  );
});
