import { afterEach, describe, expect, it } from "vitest";
import { until } from "../../helpers/until.js";
import { sha256 } from "../../worker/harness.js";
import { heygemHarness, tempFiles } from "./harness.js";

const h = heygemHarness();
afterEach(() => h.cleanup());

describe("heygem engine: jobs", () => {
  it("places the inputs in temp/, submits bare names with a fresh code, and serves the result", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    const body = await w.uploadInputs("one");
    await w.putJob("j1", { ...body, options: { chaofen: 1, watermark_switch: 1, pn: 0 } });

    const code = await until(() => emu.running);
    const submit = emu.submits[0]?.body ?? {};
    expect(submit).toMatchObject({ code, chaofen: 1, watermark_switch: 1, pn: 0 });
    expect(code).toMatch(/^mh[0-9a-f]{32}$/);
    expect(submit.audio_url).toBe(`${code}-audio.wav`);
    expect(submit.video_url).toBe(`${code}-video.mp4`);
    expect(await tempFiles(emu)).toEqual([`${code}-audio.wav`, `${code}-video.mp4`]);
    expect(await w.instance(gpu.name)).toMatchObject({
      reachable: true,
      healthy: true,
      busy: true,
      job: "j1",
    });

    await emu.advance();
    await emu.advance();
    const step = await until(async () => {
      const view = await w.job("j1");
      return view.progress === 20 && view;
    });
    expect(step).toMatchObject({ status: "running", message: "音频特征提取完成" });

    await emu.finish();
    const done = await w.until("j1", "succeeded");
    // The emulator's result is the template video; the agent hashes what it moved out of temp/.
    expect(done.result?.sha256).toBe(sha256("video one"));
    expect((await w.result("j1")).toString()).toBe("video one");
    expect(await tempFiles(emu)).toEqual([]);
    expect(await w.instance(gpu.name)).toMatchObject({ busy: false, healthy: true });
    expect((await w.health()).max_concurrent).toBe(1);
  });

  it("uses the defaults 0, 0, 1 when the task gives no options", async () => {
    const emu = await h.emulator({ stepDelayMs: 5 });
    const w = await h.worker([h.instanceOf(emu)]);
    await w.putJob("j1", await w.uploadInputs());
    await w.until("j1", "succeeded");
    expect(emu.submits[0]?.body).toMatchObject({ chaofen: 0, watermark_switch: 0, pn: 1 });
  });

  it("runs two jobs at once on a two-instance machine, one poller each, never submitting to a busy one", async () => {
    const a = await h.emulator();
    const b = await h.emulator();
    const w = await h.worker([h.instanceOf(a), h.instanceOf(b)]);
    expect((await w.health()).max_concurrent).toBe(2);
    const body = await w.uploadInputs();
    for (const id of ["j1", "j2", "j3"]) await w.putJob(id, body);

    await until(() => a.running && b.running);
    await w.until("j1", "running");
    await w.until("j2", "running");
    const health = await w.health();
    expect(health.running.sort()).toEqual(["j1", "j2"]);
    expect(health.queued).toEqual(["j3"]);
    expect((await w.job("j3")).status).toBe("queued");

    // Let one emulator finish: j3 goes to the instance that came free, and only there.
    const first = a;
    await first.finish();
    await until(() => first.running);
    await w.until("j3", "running");
    await b.finish();
    await first.finish();
    for (const id of ["j1", "j2", "j3"]) await w.until(id, "succeeded");

    expect(a.busyReplies + b.busyReplies).toBe(0);
    expect(a.maxParallelQueries).toBe(1);
    expect(b.maxParallelQueries).toBe(1);
    expect(a.submits.length + b.submits.length).toBe(3);
  });

  it("keeps a job queued while the container is busy with another client, then runs it", async () => {
    const emu = await h.emulator();
    emu.occupy();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    await w.putJob("j1", await w.uploadInputs());

    await until(() => emu.busyReplies >= 2);
    expect((await w.job("j1")).status).toBe("queued");
    const health = await w.health();
    expect(health.queued).toEqual(["j1"]);
    expect(health.running).toEqual([]);
    expect(health.instances?.[0]).toMatchObject({ reachable: true, busy: true });

    emu.free();
    await w.until("j1", "running");
    await emu.finish();
    await w.until("j1", "succeeded");
  });

  it("cancels a running job but keeps the instance until the container is done with its task", async () => {
    const emu = await h.emulator();
    const gpu = h.instanceOf(emu);
    const w = await h.worker([gpu]);
    const body = await w.uploadInputs();
    await w.putJob("j1", body);
    await w.until("j1", "running");
    const code = emu.running;

    const res = await w.call("/v1/jobs/j1", { method: "DELETE" });
    expect(((await res.json()) as { status: string }).status).toBe("cancelled");
    await w.putJob("j2", body);
    // HeyGem cannot cancel: the instance is still taken, so j2 waits without a busy submit.
    expect(await w.instance(gpu.name)).toMatchObject({ busy: true });
    expect((await w.job("j2")).status).toBe("queued");

    await emu.finish(code);
    await w.until("j2", "running");
    expect(emu.busyReplies).toBe(0);
    await emu.finish();
    await w.until("j2", "succeeded");
    expect((await tempFiles(emu)).filter((f) => code !== undefined && f.startsWith(code))).toEqual([]);
  });
});
