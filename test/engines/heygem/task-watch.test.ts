import { describe, expect, it } from "vitest";
import type { QueryReply } from "../../../src/engines/heygem/heygem-api.js";
import { TaskWatch } from "../../../src/engines/heygem/task-watch.js";

const running = (progress: number, msg = ""): QueryReply => ({
  kind: "task",
  status: 1,
  progress,
  msg,
  result: "",
});
const limits = { stallMs: 1000, deadlineAt: 10_000, unreachableGraceMs: 500 };

describe("TaskWatch", () => {
  it("reports progress changes, then the final statuses and 10004", () => {
    const watch = new TaskWatch(limits, 0);
    expect(watch.observe(running(0), 10)).toEqual({ kind: "running", progress: 0, msg: "", changed: true });
    expect(watch.observe(running(0), 20)).toMatchObject({ kind: "running", changed: false });
    expect(watch.observe(running(5, "文件下载完成"), 30)).toMatchObject({ kind: "running", changed: true });
    expect(
      watch.observe({ kind: "task", status: 2, progress: 100, msg: "任务完成", result: "/c-r.mp4" }, 40),
    ).toEqual({
      kind: "succeeded",
      result: "/c-r.mp4",
      msg: "任务完成",
    });
    expect(
      watch.observe({ kind: "task", status: 3, progress: 0, msg: "存在多人脸", result: "" }, 50),
    ).toEqual({
      kind: "failed",
      msg: "存在多人脸",
    });
    expect(watch.observe({ kind: "gone" }, 60)).toEqual({ kind: "gone" });
  });

  it("calls a task stalled when neither its progress nor its step changed for the stall time", () => {
    const watch = new TaskWatch(limits, 0);
    watch.observe(running(20, "音频特征提取完成"), 100);
    expect(watch.observe(running(20, "音频特征提取完成"), 1099)).toMatchObject({ kind: "running" });
    expect(watch.observe(running(20, "音频特征提取完成"), 1100)).toEqual({
      kind: "stalled",
      progress: 20,
      msg: "音频特征提取完成",
      forMs: 1000,
    });
  });

  it("calls a task overdue at its deadline even while it moves, and never without one", () => {
    const watch = new TaskWatch({ ...limits, stallMs: 100_000 }, 0);
    expect(watch.observe(running(80), 9_999)).toMatchObject({ kind: "running" });
    expect(watch.observe(running(90), 10_000)).toMatchObject({ kind: "overdue", progress: 90 });
    const open = new TaskWatch({ ...limits, stallMs: 100_000, deadlineAt: undefined }, 0);
    expect(open.observe(running(80), 99_999)).toMatchObject({ kind: "running" });
  });

  it("waits out a silent container for the grace time, and starts over when it answers", () => {
    const watch = new TaskWatch({ ...limits, stallMs: 100_000 }, 0);
    const down = new Error("ECONNREFUSED");
    expect(watch.observe(down, 100)).toEqual({ kind: "waiting", error: "ECONNREFUSED" });
    expect(watch.observe({ kind: "error", code: 9999, msg: "系统异常" }, 500)).toMatchObject({
      kind: "waiting",
    });
    expect(watch.observe(running(5), 550)).toMatchObject({ kind: "running" });
    expect(watch.observe(down, 600)).toMatchObject({ kind: "waiting" });
    expect(watch.observe(down, 1100)).toEqual({ kind: "unreachable", error: "ECONNREFUSED", forMs: 500 });
  });
});
