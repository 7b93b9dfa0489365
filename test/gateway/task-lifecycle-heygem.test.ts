import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { heygemHarness } from "../engines/heygem/harness.js";
import { journal } from "../helpers/fleet.js";
import { removeDir, startTestGateway, taskForm, tempDir } from "../helpers/gateway.js";
import type { HeygemEmulator } from "../helpers/heygem-emulator.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

/**
 * Issue 10: a HeyGem container cannot cancel a render. A cancelled task's job ends on the worker
 * at once, but the container goes on rendering it, so the machine's slot must stay counted busy
 * until that render ends, or the gateway would hand the machine a task it cannot start.
 */
describe("cancel of a task running on a HeyGem container", () => {
  const harness = heygemHarness();
  let dir: string;
  let emu: HeygemEmulator;
  let workerDir: string;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    emu = await harness.emulator();
    const worker = await harness.worker([{ name: "gpu0", url: emu.url, dataDir: emu.dir }]);
    workerDir = worker.dataDir;
    await writeFile(
      join(dir, "machines.json"),
      JSON.stringify({
        machines: [{ name: "gpu", host: "127.0.0.1", port: worker.handle.port, max_concurrent: 1 }],
      }),
    );
    gateway = await startTestGateway({ config: join(dir, "machines.json") }, join(dir, "gateway"));
    await until(() => gateway.fleet.get("gpu")?.state === "up");
  });

  afterAll(async () => {
    await gateway.close();
    await harness.cleanup();
    await removeDir(dir);
  });

  const create = async () => {
    const res = await fetch(`${gateway.url}/tasks`, {
      method: "POST",
      body: await taskForm({ audio: { path: join(dir, "a.wav") }, video: { path: join(dir, "v.mp4") } }),
    });
    return ((await res.json()) as { task_id: string }).task_id;
  };
  const statusOf = async (id: string) => (await gateway.store.getTask(id))?.status;
  const machineView = async () =>
    (
      (await (await fetch(`${gateway.url}/machines`)).json()) as {
        machines: {
          running: number;
          held: number;
          capacity: number;
          containers: { name: string; busy: boolean; reachable: boolean }[];
        }[];
      }
    ).machines[0];

  it("keeps the slot busy until the container ends the render, then the next task runs", async () => {
    const machine = gateway.fleet.get("gpu");
    if (!machine) throw new Error("no machine gpu");
    const first = await create();
    const firstCode = await until(() => emu.running, 20_000, { what: "first task rendering" });
    const firstJob = (await gateway.store.getTask(first))?.current_attempt ?? "";
    const second = await create();
    expect(await statusOf(second)).toBe("pending");
    // The container is shown one by one, as the agent reports it.
    await until(async () => (await machineView())?.containers.some((c) => c.busy), 20_000, {
      what: "the busy container in GET /machines",
    });
    expect((await machineView())?.containers.map((c) => [c.name, c.reachable])).toEqual([
      [expect.any(String), true],
    ]);

    const res = await fetch(`${gateway.url}/tasks/${first}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    // The job is over for the gateway and the worker; the container still renders it.
    await until(() => machine.running.size === 0 && machine.held.includes(firstJob), 20_000, {
      what: "the cancelled job's slot held",
    });
    expect(emu.running).toBe(firstCode);
    // Several health probes later, the second task still waits: the machine has no slot to start it.
    for (let probes = 0; probes < 3; probes++) {
      const seen = machine.lastSeen?.getTime();
      await until(() => machine.lastSeen !== undefined && machine.lastSeen.getTime() !== seen);
    }
    expect(await statusOf(second)).toBe("pending");
    expect(await machineView()).toMatchObject({ running: 0, held: 1, capacity: 1 });
    expect((await journal({ dataDir: workerDir })).map((l) => l.job_id)).not.toContain(
      (await gateway.store.getTask(second))?.current_attempt ?? "none",
    );
    expect(new Set((await journal({ dataDir: workerDir })).map((l) => l.job_id))).toEqual(
      new Set([firstJob]),
    );

    // The render ends; its result is thrown away, and the slot takes the next task.
    await emu.finish(firstCode);
    const secondCode = await until(() => emu.running !== firstCode && emu.running, 20_000, {
      what: "second task rendering",
    });
    expect(await statusOf(second)).toBe("processing");
    await emu.finish(secondCode);
    await until(async () => (await statusOf(second)) === "completed", 20_000);

    const cancelled = await gateway.store.getTask(first);
    expect(cancelled).toMatchObject({ status: "cancelled", result_sha256: null });
    // One task at a time ever reached the one container: it never had to answer busy.
    expect(emu.submits.map((s) => s.reply)).toEqual([10000, 10000]);
    expect(emu.busyReplies).toBe(0);
    expect((await machineView())?.held).toBe(0);
  });
});
