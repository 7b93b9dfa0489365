import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HeygemApi, HeygemUnreachableError } from "../../../src/engines/heygem/heygem-api.js";
import { ProtocolError } from "../../../src/errors.js";
import { HeygemEmulator } from "../../helpers/heygem-emulator.js";
import { rejection } from "../../helpers/rejection.js";

const OPTIONS = { chaofen: 0, watermark_switch: 0, pn: 1 } as const;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function emulator(): Promise<HeygemEmulator> {
  const emu = await HeygemEmulator.start();
  cleanups.push(() => emu.close());
  return emu;
}

/** A server that answers every request with `body` as `contentType`. */
async function fixed(body: string, contentType = "text/html; charset=utf-8", status = 200): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(status, { "content-type": contentType });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const protocolError = (call: Promise<unknown>) => rejection(call, ProtocolError);

describe("HeygemApi", () => {
  it("reads the container's text/html JSON, with an integer msg on accept, busy and 10004", async () => {
    const emu = await emulator();
    await writeFile(join(emu.tempDir, "a.wav"), "x");
    await writeFile(join(emu.tempDir, "v.mp4"), "y");
    const api = new HeygemApi({ baseUrl: `${emu.url}/`, requestTimeoutMs: 2000 });
    const req = { code: "c1", audioName: "a.wav", videoName: "v.mp4", options: OPTIONS };
    expect(await api.submit(req)).toEqual({ kind: "accepted" });
    expect(await api.submit({ ...req, code: "c2" })).toEqual({ kind: "busy", code: 10001, msg: "忙碌中" });
    expect(await api.query("c1")).toEqual({ kind: "task", status: 1, progress: 0, msg: "", result: "" });
    await emu.finish("c1");
    expect(await api.query("c1")).toMatchObject({
      kind: "task",
      status: 2,
      progress: 100,
      result: "/c1-r.mp4",
    });
    // The final answer is given once.
    expect(await api.query("c1")).toEqual({ kind: "gone" });
  });

  it("tells a refused submit (missing parameter) from a busy one", async () => {
    const emu = await emulator();
    const api = new HeygemApi({ baseUrl: emu.url, requestTimeoutMs: 2000 });
    const reply = await api.submit({ code: "", audioName: "a.wav", videoName: "v.mp4", options: OPTIONS });
    expect(reply).toEqual({ kind: "refused", code: 10002, msg: "code参数缺失" });
  });

  it("parses JSON whatever the content type says, and tolerates unknown fields", async () => {
    const url = await fixed(
      '{"code": 10000, "data": {"code": "c", "msg": "ok", "progress": "80", "result": "", "status": 1, "gpu": 0}, "msg": "", "success": true}',
      "text/plain",
    );
    const api = new HeygemApi({ baseUrl: url, requestTimeoutMs: 2000 });
    expect(await api.query("c")).toEqual({ kind: "task", status: 1, progress: 80, msg: "ok", result: "" });
  });

  it("treats a refused connection as unreachable, and a body that is not a HeyGem reply as a protocol error", async () => {
    const emu = await emulator();
    const down = emu.url;
    await emu.stop();
    await expect(new HeygemApi({ baseUrl: down, requestTimeoutMs: 2000 }).query("c")).rejects.toBeInstanceOf(
      HeygemUnreachableError,
    );
    const proxy = await fixed("<html>502 Bad Gateway</html>", "text/html", 502);
    const err = await protocolError(new HeygemApi({ baseUrl: proxy, requestTimeoutMs: 2000 }).query("c"));
    expect(err.message).toMatch(/HTTP 502, not a HeyGem reply: not JSON; body: an HTML page$/);
  });

  it("checks the reply's fields: an integer code, and a task's state under data", async () => {
    const cases: { body: string; problem: string }[] = [
      {
        body: '{"code": "10000", "data": {}, "msg": "", "success": true}',
        problem: "/code: Expected integer",
      },
      { body: '{"data": {}, "msg": "", "success": true}', problem: "/code: Expected required property" },
      {
        body: '{"code": 10000, "data": {"code": "c", "progress": 5}, "msg": "", "success": true}',
        problem: "/data/status: Expected required property",
      },
      {
        body: '{"code": 10000, "data": {"status": "2", "progress": 100}, "msg": "", "success": true}',
        problem: "/data/status: Expected integer",
      },
      {
        body: '{"code": 10000, "data": "busy", "msg": "", "success": true}',
        problem: "/data: Expected object",
      },
      { body: "[10000]", problem: "(the whole answer): Expected object" },
    ];
    for (const c of cases) {
      const api = new HeygemApi({ baseUrl: await fixed(c.body), requestTimeoutMs: 2000 });
      const err = await protocolError(api.query("c"));
      expect(err.problem, c.body).toBe(c.problem);
      expect(err.endpoint).toBe(`GET ${api.baseUrl}/easy/query?code=c`);
    }
  });

  it("a submit answered with something else than HeyGem's JSON is a protocol error", async () => {
    const api = new HeygemApi({
      baseUrl: await fixed('{"ok": true}', "application/json"),
      requestTimeoutMs: 2000,
    });
    const err = await protocolError(
      api.submit({ code: "c", audioName: "a.wav", videoName: "v.mp4", options: OPTIONS }),
    );
    expect(err.message).toMatch(/^POST http:.*\/easy\/submit: HTTP 200, not a HeyGem reply: \/code: /);
  });

  it("reports other reply codes on a query as errors", async () => {
    const url = await fixed('{"code": 9999, "data": {}, "msg": "系统异常", "success": false}');
    const api = new HeygemApi({ baseUrl: url, requestTimeoutMs: 2000 });
    expect(await api.query("c")).toEqual({ kind: "error", code: 9999, msg: "系统异常" });
  });
});
