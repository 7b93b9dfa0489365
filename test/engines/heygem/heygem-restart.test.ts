import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeVideo } from "../../helpers/media.js";
import { until } from "../../helpers/until.js";
import { heygemHarness, tempFiles } from "./harness.js";

const h = heygemHarness();
afterEach(() => h.cleanup());

describe("heygem engine: agent restart", () => {
  it("serves finished jobs again and finds a running job by its code", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const first = await h.worker([gpu]);
    await first.putJob("done", await first.uploadInputs("done"));
    await first.until("done", "running");
    await emu.finish();
    await first.until("done", "succeeded");

    await first.putJob("busy", await first.uploadInputs("busy"));
    await first.until("busy", "running");
    await emu.advance();
    await first.stop();
    // The container renders on while the agent is away.
    await emu.advance();

    const second = await h.worker([gpu], { dataDir: first.dataDir });
    expect((await second.result("done")).toString()).toBe("video done");
    expect((await second.job("busy")).status).toBe("running");
    expect((await second.health()).running).toEqual(["busy"]);
    expect(await second.instance(gpu.name)).toMatchObject({ busy: true, job: "busy" });
    await until(async () => (await second.job("busy")).progress === 20);

    await emu.finish();
    await second.until("busy", "succeeded");
    expect((await second.result("busy")).toString()).toBe("video busy");
    expect(emu.submits).toHaveLength(2);
    expect(await tempFiles(emu)).toEqual([]);
  });

  it("takes the result of a task that finished while the agent was down", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const first = await h.worker([gpu]);
    await first.putJob("j1", await first.uploadInputs());
    await first.until("j1", "running");
    await first.stop();
    await emu.finish();

    const second = await h.worker([gpu], { dataDir: first.dataDir });
    await second.until("j1", "succeeded");
    expect((await second.result("j1")).toString()).toBe("video x");
  });

  it("takes a complete result left in temp/ even when the task's final answer was already read", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const first = await h.worker([gpu]);
    const video = join(await h.tempDir(), "person.mp4");
    await makeVideo(video, { seconds: 1, width: 64, height: 64 });
    await first.putJob("j1", await first.uploadInputs("x", { video: await readFile(video) }));
    await first.until("j1", "running");
    const code = emu.running;
    await first.stop();
    await emu.finish();
    // What an agent that died right after reading the final answer leaves: 10004 and the file.
    const final = await (await fetch(`${emu.url}/easy/query?code=${code}`)).text();
    expect(JSON.parse(final)).toMatchObject({ data: { status: 2 } });

    const second = await h.worker([gpu], { dataDir: first.dataDir });
    await second.until("j1", "succeeded");
    expect((await second.result("j1")).equals(await readFile(video))).toBe(true);
    expect(await tempFiles(emu)).toEqual([]);
  });

  it("reports a running job as lost when the container forgot it meanwhile", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const first = await h.worker([gpu]);
    await first.putJob("j1", await first.uploadInputs());
    await first.until("j1", "running");
    await first.stop();
    await emu.restart();

    const second = await h.worker([gpu], { dataDir: first.dataDir });
    const view = await second.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/^lost: HeyGem instance .* no longer knows task/);
    expect(await tempFiles(emu)).toEqual([]);
  });

  it("reports a running job as lost when its instance is no longer configured", async () => {
    const emu = await h.emulator();
    const other = await h.emulator();
    const first = await h.worker([h.instanceOf(emu)]);
    await first.putJob("j1", await first.uploadInputs());
    await first.until("j1", "running");
    await first.stop();

    const second = await h.worker([h.instanceOf(other)], { dataDir: first.dataDir });
    const view = await second.until("j1", "failed");
    expect(view.error).toMatchObject({ kind: "machine" });
    expect(view.error?.message).toMatch(/^lost: HeyGem instance .* is no longer configured/);
  });

  it("keeps a job that waited for a busy container queued across the restart", async () => {
    const emu = await h.emulator();
    emu.occupy();
    const gpu = h.instanceOf(emu);
    const first = await h.worker([gpu]);
    await first.putJob("j1", await first.uploadInputs());
    await until(() => emu.busyReplies > 0);
    await first.stop();

    emu.free();
    const second = await h.worker([gpu], { dataDir: first.dataDir });
    await second.until("j1", "running");
    await emu.finish();
    await second.until("j1", "succeeded");
  });
});
