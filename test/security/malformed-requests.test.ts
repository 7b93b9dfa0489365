import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess, startWorkerProcess } from "../helpers/processes.js";
import { filePart, rawRequest } from "../helpers/raw-http.js";

/**
 * Issue 9, "clear faults": every malformed request found by probing a running gateway answers a
 * 4xx with a JSON error (or Node's own 4xx for what never reaches the app), never a 500.
 */
describe("malformed requests", () => {
  let dir: string;
  let gateway: Started;
  let audio: Buffer;
  let video: Buffer;
  const B = "----malformed";

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    audio = await readFile(join(dir, "a.wav"));
    video = await readFile(join(dir, "v.mp4"));
    gateway = await startGatewayProcess(["--data-dir", join(dir, "data"), "--min-free-disk", "0"], {
      cwd: dir,
    });
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  const post = (path: string, contentType: string, body: string | Buffer) =>
    rawRequest(
      gateway.url,
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
      body,
    );
  const get = (path: string, headers = "") =>
    rawRequest(gateway.url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`);
  const form = (...parts: Buffer[]) => Buffer.concat([...parts, Buffer.from(`--${B}--\r\n`)]);
  const field = (name: string, value: string) =>
    Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);

  /**
   * `status`, or for what Node refuses while the client still writes (431), possibly a reset
   * before the answer could be read (0): either way no 5xx.
   */
  const cases: Array<{
    name: string;
    send: () => ReturnType<typeof rawRequest>;
    status: number;
    error?: string;
    orReset?: true;
  }> = [
    {
      name: "multipart without a boundary",
      send: () => post("/tasks", "multipart/form-data", "x"),
      status: 400,
      error: "MALFORMED_MULTIPART",
    },
    {
      name: "a boundary longer than the parser takes",
      send: () => post("/tasks", `multipart/form-data; boundary=${"b".repeat(300)}`, "x"),
      status: 400,
      error: "MALFORMED_MULTIPART",
    },
    {
      name: "offset=1e400",
      send: () => get("/tasks?offset=1e400"),
      status: 400,
      error: "INVALID_REQUEST",
    },
    { name: "limit=1e400", send: () => get("/tasks?limit=1e400"), status: 400, error: "INVALID_REQUEST" },
    { name: "limit=-Infinity", send: () => get("/tasks?limit=-Infinity"), status: 400 },
    { name: "offset=1e20", send: () => get("/tasks?offset=1e20"), status: 400, error: "INVALID_REQUEST" },
    { name: "negative offset", send: () => get("/tasks?offset=-1"), status: 400, error: "INVALID_REQUEST" },
    { name: "fractional limit", send: () => get("/tasks?limit=1.5"), status: 400, error: "INVALID_REQUEST" },
    { name: "unknown status", send: () => get("/tasks?status=nope"), status: 400, error: "INVALID_REQUEST" },
    {
      name: "a URL that does not decode",
      send: () => get("/tasks/%ff%fe"),
      status: 400,
      error: "BAD_REQUEST",
    },
    { name: "a 100 kB URL", send: () => get(`/tasks/${"a".repeat(100_000)}`), status: 431, orReset: true },
    {
      name: "a 20 kB header",
      send: () => get("/tasks", `X-Big: ${"a".repeat(20_000)}\r\n`),
      status: 431,
      orReset: true,
    },
    {
      name: "bad JSON to a machine route",
      send: () => post("/machines/embedded/drain", "application/json", "{"),
      status: 400,
    },
    { name: "an unknown content type", send: () => post("/tasks", "application/x-nope", "x"), status: 415 },
    {
      name: "text/plain as a task",
      send: () => post("/tasks", "text/plain", "x"),
      status: 415,
      error: "NOT_MULTIPART",
    },
    {
      name: "a form-encoded task",
      send: () => post("/tasks", "application/x-www-form-urlencoded", "audio=x"),
      status: 415,
    },
    {
      name: "a duplicate audio file",
      send: () =>
        post(
          "/tasks",
          `multipart/form-data; boundary=${B}`,
          form(filePart(B, "audio", "a.wav", audio), filePart(B, "audio", "b.wav", audio)),
        ),
      status: 400,
      error: "DUPLICATE_FIELD",
    },
    {
      name: "a huge field name",
      send: () => post("/tasks", `multipart/form-data; boundary=${B}`, form(field("x".repeat(100_000), "1"))),
      status: 400,
    },
    {
      name: "a description of 1 MB",
      send: () =>
        post(
          "/tasks",
          `multipart/form-data; boundary=${B}`,
          form(field("description", "d".repeat(1024 * 1024)), filePart(B, "audio", "a.wav", audio)),
        ),
      status: 400,
      error: "INVALID_FIELD",
    },
    {
      name: "a content-disposition without a name",
      send: () =>
        post(
          "/tasks",
          `multipart/form-data; boundary=${B}`,
          form(Buffer.from(`--${B}\r\nContent-Disposition: form-data\r\n\r\nxyz\r\n`)),
        ),
      status: 400,
    },
    {
      name: "a huge priority",
      send: () =>
        post(
          "/tasks",
          `multipart/form-data; boundary=${B}`,
          form(
            field("priority", "1e400"),
            filePart(B, "audio", "a.wav", audio),
            filePart(B, "video", "v.mp4", video),
          ),
        ),
      status: 400,
      error: "INVALID_FIELD",
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status}${c.error ? ` ${c.error}` : ""}`, async () => {
      const answer = await c.send();
      const allowed = c.orReset ? [c.status, 0] : [c.status];
      expect(allowed, answer.text.slice(0, 300)).toContain(answer.status);
      if (c.error) expect(answer.text).toContain(`"error":"${c.error}"`);
    });
  }

  it("a worker answers a URL that does not decode in the same JSON", async () => {
    const worker = await startWorkerProcess(["--data-dir", join(dir, "worker-data")]);
    const answer = await rawRequest(worker.url, "GET /v1/jobs/%ff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect(answer.status).toBe(400);
    const body = JSON.parse(answer.text.slice(answer.text.indexOf("\r\n\r\n") + 4)) as Record<
      string,
      unknown
    >;
    expect(Object.keys(body).sort()).toEqual(["error", "message"]);
    expect(body.error).toBe("BAD_REQUEST");
  });

  it("left the gateway serving, with nothing stored", async () => {
    const list = (await (await fetch(`${gateway.url}/tasks`)).json()) as { total: number };
    expect(list.total).toBe(0);
    expect(gateway.lines.filter((l) => l.includes('"level":50'))).toEqual([]);
  });
});
