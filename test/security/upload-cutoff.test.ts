import { readdir, readFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { filePart, multipartHead, openFiles, rawRequest } from "../helpers/raw-http.js";
import { until } from "../helpers/until.js";

/**
 * Issue 9: "an upload cut off in any way leaves no open file and no temp file", and no upload is
 * held forever. Against a real gateway process, whose descriptors are read from /proc.
 */
describe("uploads cut off", () => {
  let dir: string;
  let data: string;
  let gateway: Started;
  let pid: number;
  let audio: Buffer;
  let video: Buffer;
  const B = "----cutoff-boundary";

  beforeAll(async () => {
    dir = await tempDir();
    data = join(dir, "data");
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    audio = await readFile(join(dir, "a.wav"));
    video = await readFile(join(dir, "v.mp4"));
    gateway = await startGatewayProcess(
      [
        "--data-dir",
        data,
        "--upload-idle-timeout",
        "1000",
        "--upload-timeout",
        "3000",
        "--header-timeout",
        "1000",
        "--min-free-disk",
        "0",
      ],
      { cwd: dir },
    );
    pid = gateway.child.pid ?? 0;
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  /** Nothing of any upload is open or left in the temp folder. */
  async function nothingLeft(): Promise<true> {
    const open = (await openFiles(pid)).filter((f) => f.includes(join(data, "blobs")));
    const temps = await readdir(join(data, "blobs", ".tmp"));
    expect({ open, temps }).toEqual({ open: [], temps: [] });
    return true;
  }
  /** The gateway's log lines saying a client hung up mid-upload (it answers nobody, but logs). */
  const hangUps = () => gateway.lines.filter((l) => l.includes("closed the connection before")).length;
  const tasks = async () => ((await (await fetch(`${gateway.url}/tasks`)).json()) as { total: number }).total;

  it("a form with a full Content-Length but no closing boundary is answered 400 at once, leaving nothing", async () => {
    for (const route of ["/tasks", "/tasks/sync"]) {
      const body = Buffer.concat([
        filePart(B, "audio", "a.wav", audio),
        filePart(B, "video", "v.mp4", video),
      ]);
      const answer = await rawRequest(gateway.url, multipartHead(route, B, body.length), body);
      expect(answer.status, route).toBe(400);
      expect(answer.text).toContain('"error":"MALFORMED_MULTIPART"');
    }
    await until(nothingLeft, 5000);
    expect(await tasks()).toBe(0);
  });

  it("an upload that goes quiet is cut after --upload-idle-timeout with 408, leaving nothing", async () => {
    const part = filePart(B, "audio", "a.wav", audio);
    // Promises more than it sends, then sends nothing.
    const answer = await rawRequest(gateway.url, multipartHead("/tasks", B, part.length * 3), part, {
      timeoutMs: 8000,
    });
    expect(answer.status).toBe(408);
    expect(answer.text).toContain('"error":"UPLOAD_TIMEOUT"');
    expect(answer.text).toMatch(/\r\nconnection: close\r\n/i);
    await until(nothingLeft, 5000);
  });

  it("a quiet client between two files is cut as well", async () => {
    const part = filePart(B, "audio", "a.wav", audio);
    const answer = await rawRequest(gateway.url, multipartHead("/tasks", B, part.length + 5000), part, {
      timeoutMs: 8000,
    });
    expect(answer.status).toBe(408);
    await until(nothingLeft, 5000);
  });

  it("an upload that trickles past --upload-timeout is cut, leaving nothing", async () => {
    const part = filePart(B, "audio", "a.wav", audio);
    const { hostname, port } = new URL(gateway.url);
    const socket = net.connect(Number(port), hostname);
    let received = "";
    socket.on("data", (d: Buffer) => {
      received += d.toString();
    });
    socket.on("error", () => undefined);
    socket.write(multipartHead("/tasks", B, part.length * 100));
    socket.write(part);
    // A byte every 200 ms: never idle for the 1 s idle limit, but slower than the 3 s total.
    const trickle = setInterval(() => socket.write("x"), 200);
    try {
      await until(() => socket.destroyed || received.includes("\r\n\r\n"), 10_000, { what: "an answer" });
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    await until(nothingLeft, 5000);
  });

  it("headers that never end are cut after --header-timeout", async () => {
    const { hostname, port } = new URL(gateway.url);
    const socket = net.connect(Number(port), hostname);
    socket.on("error", () => undefined);
    socket.resume();
    socket.write("POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    const closed = new Promise((resolve) => socket.once("close", resolve));
    await until(() => socket.destroyed || socket.readableEnded, 10_000, { what: "the server to hang up" });
    socket.destroy();
    await closed;
  });

  const cuts: Array<{ name: string; body: () => Buffer; declared: () => number }> = [
    {
      name: "mid-file",
      body: () => filePart(B, "audio", "a.wav", audio).subarray(0, 20_000),
      declared: () => audio.length + video.length + 1000,
    },
    {
      name: "mid-second-file",
      body: () =>
        Buffer.concat([filePart(B, "audio", "a.wav", audio), filePart(B, "video", "v.mp4", video)]).subarray(
          0,
          audio.length + 1000,
        ),
      declared: () => audio.length + video.length + 1000,
    },
  ];
  for (const cut of cuts) {
    it(`a client that hangs up ${cut.name} leaves no open file and no temp file`, async () => {
      const before = hangUps();
      for (const route of ["/tasks", "/tasks/sync"]) {
        await rawRequest(gateway.url, multipartHead(route, B, cut.declared()), cut.body(), {
          destroyAfterSend: true,
          timeoutMs: 2000,
        });
      }
      await until(() => hangUps() === before + 2, 5000, { what: "the gateway to see both hang-ups" });
      await until(nothingLeft, 5000);
      expect(await tasks()).toBe(0);
    });
  }

  it("a client that hangs up while its files are probed gets no task, and nothing is left", async () => {
    const body = Buffer.concat([
      filePart(B, "audio", "a.wav", audio),
      filePart(B, "video", "v.mp4", video),
      Buffer.from(`--${B}--\r\n`),
    ]);
    const before = hangUps();
    await rawRequest(gateway.url, multipartHead("/tasks", B, body.length), body, {
      destroyAfterSend: true,
      timeoutMs: 2000,
    });
    await until(() => hangUps() === before + 1, 5000, { what: "the gateway to see the hang-up" });
    await until(nothingLeft, 5000);
    expect(await tasks()).toBe(0);
  });

  it("still takes a whole task afterwards", async () => {
    const body = Buffer.concat([
      filePart(B, "audio", "a.wav", audio),
      filePart(B, "video", "v.mp4", video),
      Buffer.from(`--${B}--\r\n`),
    ]);
    const answer = await rawRequest(gateway.url, multipartHead("/tasks", B, body.length), body);
    expect(answer.status).toBe(200);
    await until(nothingLeft, 5000);
  });
});
