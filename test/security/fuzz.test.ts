import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { fdCount, openFiles, rawRequest } from "../helpers/raw-http.js";
import { until } from "../helpers/until.js";

/**
 * Issue 9: thousands of generated multipart bodies and query strings thrown at a gateway process.
 * Whatever arrives, the answer is never a 5xx, no descriptor or temp file is left behind, and the
 * gateway still takes and serves a real task afterwards. Sized for a 2-core CI box (~2000
 * requests in a few tens of seconds); the seed is fixed so that a failure replays.
 */
const MULTIPART_RUNS = Number(process.env.FUZZ_MULTIPART ?? 1200);
const QUERY_RUNS = Number(process.env.FUZZ_QUERY ?? 800);
const SEED = 9_2026;

interface Shot {
  head: string;
  body: Buffer;
  /** The client hangs up after sending: no answer is expected. */
  hangUp: boolean;
}

describe("fuzzing the gateway", () => {
  let dir: string;
  let data: string;
  let gateway: Started;
  let pid: number;
  let audio: Buffer;
  let video: Buffer;
  let doneTask: string;
  const statuses = new Map<number, number>();

  beforeAll(async () => {
    dir = await tempDir();
    data = join(dir, "data");
    await makeAudio(join(dir, "a.wav"), { seconds: 0.2 });
    await makeVideo(join(dir, "v.mp4"), { seconds: 0.2, width: 64, height: 64 });
    audio = await readFile(join(dir, "a.wav"));
    video = await readFile(join(dir, "v.mp4"));
    gateway = await startGatewayProcess(
      ["--data-dir", data, "--min-free-disk", "0", "--upload-idle-timeout", "1000", "--max-upload-mb", "1"],
      { cwd: dir },
    );
    pid = gateway.child.pid ?? 0;
    doneTask = await completedTask();
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  async function completedTask(): Promise<string> {
    const form = new FormData();
    form.append("audio", new Blob([audio]), "a.wav");
    form.append("video", new Blob([video]), "v.mp4");
    const res = await fetch(`${gateway.url}/tasks`, { method: "POST", body: form });
    expect(res.status).toBe(200);
    const { task_id } = (await res.json()) as { task_id: string };
    await until(async () => {
      const task = (await (await fetch(`${gateway.url}/tasks/${task_id}`)).json()) as { status: string };
      return task.status === "completed";
    }, 30_000);
    return task_id;
  }

  async function shoot(shot: Shot): Promise<void> {
    const answer = await rawRequest(gateway.url, shot.head, shot.body, {
      destroyAfterSend: shot.hangUp,
      headOnly: shot.head.startsWith("HEAD "),
      timeoutMs: 10_000,
    });
    statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    if (answer.status >= 500) throw new Error(`answered ${answer.status}: ${answer.text.slice(0, 400)}`);
    if (!shot.hangUp && answer.status === 0) throw new Error("no answer");
  }

  /** Descriptors of a gateway at rest: before the fuzzing, and again once it has settled after. */
  const restingFds = async () => {
    const open = (await openFiles(pid)).filter((f) => f.startsWith(data));
    return { all: await fdCount(pid), uploads: open.filter((f) => f.includes("blobs")) };
  };

  it("answers thousands of generated multipart bodies and queries without a 5xx, leaking nothing", async () => {
    const before = await restingFds();

    const token = fc.stringMatching(/^[A-Za-z0-9'()+_,.-]{1,70}$/);
    const boundary = fc.oneof(
      { weight: 6, arbitrary: token },
      fc.constant(""),
      fc.string({ maxLength: 300 }).filter((s) => !/[\r\n]/.test(s)),
    );
    const name = fc.oneof(
      fc.constantFrom(
        "audio",
        "video",
        "audio_file",
        "video_file",
        "description",
        "callback_url",
        "priority",
      ),
      fc.constantFrom("pn", "chaofen", "watermark_switch", "__proto__", "constructor", ""),
      fc.string({ maxLength: 40 }),
      fc.nat({ max: 20_000 }).map((n) => "n".repeat(n)),
    );
    const content = fc.oneof(
      fc.constant(audio),
      fc.constant(video),
      fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
      fc.constant(Buffer.alloc(0)),
      fc.constantFrom("1", "0", "-5", "1e400", "http://127.0.0.1:1/x", "x".repeat(70_000)).map(Buffer.from),
    );
    const disposition = fc.oneof(
      fc
        .record({ name, filename: fc.option(fc.string({ maxLength: 60 }), { nil: undefined }) })
        .map(
          ({ name, filename }) =>
            `Content-Disposition: form-data; name="${name}"${filename === undefined ? "" : `; filename="${filename}"`}\r\n`,
        ),
      fc.constantFrom(
        "",
        "Content-Disposition: form-data\r\n",
        "Content-Disposition: attachment; name=audio\r\n",
        "Content-Disposition: form-data; name=\r\n",
        "Content-Disposition: form-data; name=\"audio\"; filename*=UTF-8''%ff%fe.wav\r\n",
      ),
      fc.string({ maxLength: 200 }).map((s) => `${s}\r\n`),
    );
    const part = fc.record({
      disposition,
      type: fc.constantFrom(
        "",
        "Content-Type: application/octet-stream\r\n",
        "Content-Type: application/json\r\n",
      ),
      content,
    });
    const multipart = fc
      .record({
        boundary,
        parts: fc.array(part, { maxLength: 6 }),
        close: fc.constantFrom("proper", "missing", "junk"),
        contentType: fc.constantFrom("plain", "quoted", "none", "no-boundary", "other"),
        route: fc.constantFrom("/tasks", "/tasks/sync"),
        // One body in five is cut off by a client that hangs up.
        cut: fc.oneof(
          { weight: 4, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
        ),
        lengthDelta: fc.constantFrom(0, 0, 0, -1, -100),
      })
      .map(({ boundary: b, parts, close, contentType, route, cut, lengthDelta }): Shot => {
        const chunks = parts.map((p) =>
          Buffer.concat([
            Buffer.from(`--${b}\r\n${p.disposition}${p.type}\r\n`),
            p.content,
            Buffer.from("\r\n"),
          ]),
        );
        if (close === "proper") chunks.push(Buffer.from(`--${b}--\r\n`));
        if (close === "junk") chunks.push(Buffer.from(`--${b}--junk\r\n--${b}\r\n`));
        const full = Buffer.concat(chunks);
        const type = {
          plain: `multipart/form-data; boundary=${b}`,
          quoted: `multipart/form-data; boundary="${b}"`,
          none: "",
          "no-boundary": "multipart/form-data",
          other: "application/octet-stream",
        }[contentType];
        // A cut body is sent in part and the client hangs up, so the declared length is the full one.
        const body = cut === undefined ? full : full.subarray(0, Math.floor(full.length * cut));
        const declared = cut === undefined ? Math.max(0, full.length + lengthDelta) : full.length;
        const head =
          `POST ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
          `${type ? `Content-Type: ${type.replace(/[\r\n]/g, "")}\r\n` : ""}Content-Length: ${declared}\r\n\r\n`;
        return { head, body, hangUp: cut !== undefined };
      });

    const number = fc.oneof(
      fc.integer().map(String),
      fc.double().map(String),
      fc.constantFrom(
        "1e400",
        "-1e400",
        "Infinity",
        "NaN",
        "0x10",
        "99999999999999999999999",
        "",
        " 1",
        "1.0",
      ),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
      fc.constantFrom("%", "%zz", "%ff%fe", "%00", "[]", "a[b]=c"),
    );
    const query = fc
      .array(fc.tuple(fc.constantFrom("limit", "offset", "status", "x", "limit[]", ""), number), {
        maxLength: 4,
      })
      .map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join("&"));
    const range = fc.oneof(
      fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `bytes=${a}-${b}`),
      fc.nat().map((n) => `bytes=-${n}`),
      fc.constantFrom("bytes=0-", "bytes=1e400-", "bytes=-0", "bytes=5-1", "bytes=0-1,2-3", "items=0-1", ""),
      fc.string({ maxLength: 40 }).filter((s) => !/[\r\n]/.test(s)),
    );
    const read = fc
      .record({
        kind: fc.constantFrom("list", "task", "result", "events"),
        query,
        range: fc.option(range, { nil: undefined }),
        id: fc.oneof(fc.constant("done"), fc.uuid(), fc.string({ maxLength: 50 }).map(encodeURIComponent)),
        head: fc.boolean(),
      })
      .map(({ kind, query: q, range: r, id, head }): Shot => {
        const taskId = id === "done" ? doneTask : id;
        const path = {
          list: `/tasks?${q}`,
          task: `/tasks/${taskId}?${q}`,
          result: `/tasks/${taskId}/result`,
          events: `/tasks/${taskId}/events`,
        }[kind];
        const method = kind === "result" && head ? "HEAD" : "GET";
        const headers = r === undefined ? "" : `Range: ${r}\r\n`;
        return {
          head: `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`,
          body: Buffer.alloc(0),
          hangUp: false,
        };
      });

    await fc.assert(fc.asyncProperty(multipart, shoot), { numRuns: MULTIPART_RUNS, seed: SEED });
    await fc.assert(fc.asyncProperty(read, shoot), { numRuns: QUERY_RUNS, seed: SEED });

    // Cut uploads finish their cleanup after the client left; the gateway settles back.
    const after = await until(
      async () => {
        const now = await restingFds();
        const temps = await readdir(join(data, "blobs", ".tmp"));
        return now.uploads.length === 0 && temps.length === 0 && now.all <= before.all + 2 && now;
      },
      15_000,
      { what: "the gateway to settle" },
    );
    const histogram = Object.fromEntries([...statuses].sort(([a], [b]) => a - b));
    // The numbers issue 9 asks to record, in the test's output.
    process.stdout.write(
      `fuzz: ${MULTIPART_RUNS + QUERY_RUNS} requests, statuses ${JSON.stringify(histogram)}, ` +
        `fds ${before.all} before, ${after.all} after\n`,
    );
    expect([...statuses.keys()].filter((s) => s >= 500)).toEqual([]);

    // And it still does its job.
    const task = await completedTask();
    const result = await fetch(`${gateway.url}/tasks/${task}/result`);
    expect(result.status).toBe(200);
    expect((await result.arrayBuffer()).byteLength).toBeGreaterThan(0);
    expect(gateway.lines.filter((l) => l.includes('"level":50'))).toEqual([]);
  }, 240_000);
});
