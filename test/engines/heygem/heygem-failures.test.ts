import { afterEach, describe, expect, it } from "vitest";
import { startScriptedServer } from "../../helpers/scripted-server.js";
import { until } from "../../helpers/until.js";
import { heygemHarness, tempFiles } from "./harness.js";

const h = heygemHarness();
afterEach(() => h.cleanup());

describe("heygem engine: failure classes", () => {
  it("fails several faces as the input's fault, in the engine's words plus an explanation", async () => {
    const emu = await h.emulator({ stepDelayMs: 5 });
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    emu.failNext("存在多人脸");
    await w.putJob("j1", await w.uploadInputs());
    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("input");
    expect(view.error?.message).toContain("存在多人脸");
    expect(view.error?.message).toMatch(/more than one face/);
    // The input's fault says nothing about the container.
    expect(await w.instance(gpu.name)).toMatchObject({ healthy: true, busy: false });
    expect(await tempFiles(emu)).toEqual([]);
  });

  it("fails an unreadable template video as the input's fault", async () => {
    const emu = await h.emulator({ stepDelayMs: 5 });
    const w = await h.worker([h.instanceOf(emu)]);
    emu.failNext("format video error");
    await w.putJob("j1", await w.uploadInputs());
    const view = await w.until("j1", "failed");
    expect(view.error).toMatchObject({ kind: "input" });
    expect(view.error?.message).toMatch(/format video error.*cannot read the template video/);
  });

  it("blames a wrong volume mapping on the machine and marks the instance unhealthy until it answers again", async () => {
    const emu = await h.emulator({ stepDelayMs: 5 });
    // The agent writes into a folder that is not the one the container sees.
    const wrong = await h.tempDir();
    const gpu = h.instanceOf(emu, wrong);
    const w = await h.worker([gpu], { settings: { probeIntervalMs: 60_000 } });
    await w.putJob("j1", await w.uploadInputs());
    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toContain("三次获取音频时长失败");
    expect(view.error?.message).toMatch(/wrong volume mapping/);
    const instance = await w.instance(gpu.name);
    expect(instance).toMatchObject({ reachable: true, healthy: false, busy: false });
    expect(instance.last_error).toContain("三次获取音频时长失败");

    // The next job asks the instance first; it answers, so it is healthy again and gets the job.
    await w.putJob("j2", await w.uploadInputs("2"));
    await w.until("j2", "failed");
    expect(emu.submits).toHaveLength(2);
  });

  it("fails a job as the machine's when the container does not answer, and marks the instance", async () => {
    const emu = await h.emulator();
    await emu.stop();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    await w.putJob("j1", await w.uploadInputs());
    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/no HeyGem instance can take the job.*does not answer/);
    expect(await w.instance(gpu.name)).toMatchObject({ reachable: false, healthy: false });

    await emu.start();
    await until(async () => (await w.instance(gpu.name)).healthy);
  });

  it("fails a running job whose container restarted (10004) as the machine's, and recovers", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    await w.putJob("j1", await w.uploadInputs());
    await w.until("j1", "running");
    await emu.advance();
    await emu.restart();

    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/lost: .*forgot task .*10004/);
    expect(await tempFiles(emu)).toEqual([]);

    // It answers again, so the next job runs there.
    await w.putJob("j2", await w.uploadInputs("2"));
    await w.until("j2", "running");
    await emu.finish();
    await w.until("j2", "succeeded");
    expect(await w.instance(gpu.name)).toMatchObject({ healthy: true, reachable: true });
  });

  it("detects a hang at 20 % with the stall timer, and keeps the instance until the hung task ends", async () => {
    const emu = await h.emulator({ stepDelayMs: 5 });
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu], { settings: { stallTimeoutMs: 500 } });
    emu.hangNext(20);
    await w.putJob("j1", await w.uploadInputs());

    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/stalled at 20 % \("音频特征提取完成"\)/);
    const instance = await w.instance(gpu.name);
    expect(instance).toMatchObject({ healthy: false, busy: true });
    expect(instance.last_error).toMatch(/stalled/);

    // The operator restarts the hung container: the task is gone and the instance free again.
    await emu.restart();
    await until(async () => {
      const i = await w.instance(gpu.name);
      return i.healthy && !i.busy;
    });
  });

  it("fails a task past its overall limit, scaled by the audio's length", async () => {
    const emu = await h.emulator();
    const w = await h.worker([h.instanceOf(emu)], {
      settings: { timeoutBaseMs: 100, timeoutPerAudioSecondMs: 100 },
    });
    await w.putJob("j1", { ...(await w.uploadInputs()), audio_duration: 2 });
    const view = await w.until("j1", "failed");
    expect(view.started_at).toBeDefined();
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/did not finish within its limit of 0.3 s for 2 s of audio/);
  });

  it("fails a job when the container stays busy with another client beyond the limit", async () => {
    const emu = await h.emulator();
    emu.occupy();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu], { settings: { busyTimeoutMs: 200 } });
    await w.putJob("j1", await w.uploadInputs());
    const view = await w.until("j1", "failed");
    expect(view.started_at).toBeUndefined();
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/stayed busy.*busy with another client's task/);
    expect(emu.busyReplies).toBeGreaterThan(1);
  });

  it("fails a running job whose container stops answering beyond the grace", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu], { settings: { unreachableGraceMs: 200 } });
    await w.putJob("j1", await w.uploadInputs());
    await w.until("j1", "running");
    await emu.stop();
    const view = await w.until("j1", "failed");
    expect(view.error?.kind).toBe("machine");
    expect(view.error?.message).toMatch(/did not answer for/);
    expect(await w.instance(gpu.name)).toMatchObject({ reachable: false, healthy: false, busy: false });
  });

  it("fails a job as the machine's when the container answers with something other than HeyGem's JSON", async () => {
    // Say another web service took the container's port: it answers, but not the contract.
    const impostor = await startScriptedServer(() => ({ body: "<html><h1>It works!</h1></html>" }));
    const gpu = { name: "gpu-impostor", url: impostor.url, dataDir: await h.tempDir() };
    const w = await h.worker([gpu]);
    try {
      await w.putJob("j1", await w.uploadInputs());
      const view = await w.until("j1", "failed");
      expect(view.error?.kind).toBe("machine");
      expect(view.error?.message).toMatch(/no HeyGem instance can take the job/);
      const instance = await w.instance(gpu.name);
      expect(instance.healthy).toBe(false);
      expect(instance.last_error).toMatch(/not a HeyGem reply: not JSON; body: an HTML page/);
    } finally {
      await w.stop();
      await impostor.close();
    }
  });
});
