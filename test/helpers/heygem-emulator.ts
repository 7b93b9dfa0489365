import { copyFile, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { runFfmpeg } from "../../src/media/run-ffmpeg.js";

/**
 * An emulator of one HeyGem gen-video container's HTTP API, built from heygem-contract.md with its
 * quirks: replies are Python `json.dumps` strings (ASCII-escaped) served as text/html, the submit's
 * `msg` is the integer 10000, one task at a time (`threaded=False`: a second submit is answered
 * busy, 10001, and not queued), stepped progress, the final status is answered once and the task
 * then deleted (10004 after), and the result lands in `<dir>/temp/<code>-r.mp4`.
 *
 * Tests steer it: steps advance by `advance()` (or every `stepDelayMs`), and `failNext`,
 * `hangNext`, `occupy`, `restart`, `stop`/`start` script the failures seen in the field.
 */

export interface EmulatorOptions {
  /** The host data folder mapped to /code/data; a new temp dir by default. */
  dir?: string;
  /** Advance each running task one step every this many ms; undefined: only `advance()` does. */
  stepDelayMs?: number;
  /** `copy`: the result is the template video; `mux`: the template's video with the audio, by ffmpeg. */
  render?: "copy" | "mux";
}

export interface SubmitRecord {
  readonly body: Record<string, unknown>;
  /** The `code` of the reply: 10000 accepted, 10001 busy, 10002 missing parameter. */
  readonly reply: number;
}

interface Task {
  readonly code: string;
  readonly audio: string;
  readonly video: string;
  status: 1 | 2 | 3;
  progress: number;
  msg: string;
  step: number;
  result: string;
  readonly fail?: { msg: string; afterProgress: number } | undefined;
  readonly hangAt?: number | undefined;
  rendering?: Promise<void>;
}

/** The steps of a task that goes well (heygem-contract.md, "Progress moves in steps"). */
const STEPS: readonly { progress: number; msg: string }[] = [
  { progress: 5, msg: "文件下载完成" },
  { progress: 20, msg: "音频特征提取完成" },
  { progress: 80, msg: "视频合成中" },
  { progress: 100, msg: "任务完成" },
];

export class HeygemEmulator {
  readonly dir: string;
  readonly submits: SubmitRecord[] = [];
  /** Codes of every query, in order. */
  readonly queries: string[] = [];
  /** The most queries that were ever being answered at once. */
  maxParallelQueries = 0;
  private parallelQueries = 0;
  private server: Server | undefined;
  private port = 0;
  private readonly tasks = new Map<string, Task>();
  private occupied = false;
  private nextFail: { msg: string; afterProgress: number } | undefined;
  private nextHang: number | undefined;
  private ticker: NodeJS.Timeout | undefined;

  private constructor(
    dir: string,
    private readonly options: EmulatorOptions,
  ) {
    this.dir = dir;
  }

  static async start(options: EmulatorOptions = {}): Promise<HeygemEmulator> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "mh-heygem-")));
    await mkdir(join(dir, "temp"), { recursive: true });
    const emulator = new HeygemEmulator(dir, options);
    await emulator.start();
    return emulator;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get tempDir(): string {
    return join(this.dir, "temp");
  }

  /** `--heygem` value for a worker that sees this container's data folder. */
  get flag(): string {
    return `${this.url}=${this.dir}`;
  }

  /** Submits answered busy (10001). */
  get busyReplies(): number {
    return this.submits.filter((s) => s.reply === 10001).length;
  }

  /** The code of the task it renders now (status 1), if any. */
  get running(): string | undefined {
    for (const task of this.tasks.values()) if (task.status === 1) return task.code;
    return undefined;
  }

  /** Progress of a task it still knows. */
  progressOf(code: string): number | undefined {
    return this.tasks.get(code)?.progress;
  }

  /** Listens (again) on its port; the first start picks a free one. */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    if (this.options.stepDelayMs !== undefined) {
      this.ticker = setInterval(() => this.advanceAll(), this.options.stepDelayMs);
    }
  }

  /** Stops answering: connections are refused until `start()`. Tasks are kept (see `restart`). */
  async stop(): Promise<void> {
    clearInterval(this.ticker);
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A container restart: down, every task forgotten (10004 for all), up again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    this.tasks.clear();
    await this.start();
  }

  async close(options: { removeDir?: boolean } = {}): Promise<void> {
    await this.stop();
    await Promise.allSettled([...this.tasks.values()].map((t) => t.rendering));
    if (options.removeDir ?? this.options.dir === undefined)
      await rm(this.dir, { recursive: true, force: true });
  }

  /** Another client (the desktop app) is rendering: every submit is answered busy until `free()`. */
  occupy(): void {
    this.occupied = true;
  }

  free(): void {
    this.occupied = false;
  }

  /** The next accepted task fails with `msg` (status 3) on the step after `afterProgress`. */
  failNext(msg: string, afterProgress = 5): void {
    this.nextFail = { msg, afterProgress };
  }

  /** The next accepted task stops moving once it reaches `progress`, still answering status 1. */
  hangNext(progress: number): void {
    this.nextHang = progress;
  }

  /** Moves the running task (or `code`) one step on; resolves once a result it writes is there. */
  async advance(code = this.running): Promise<void> {
    const task = code === undefined ? undefined : this.tasks.get(code);
    if (task?.status !== 1) throw new Error(`no running task ${code ?? ""} to advance`);
    this.step(task);
    await task.rendering;
  }

  /** Advances until the task is final (or hangs); for tests that only need it done. */
  async finish(code = this.running): Promise<void> {
    const task = code === undefined ? undefined : this.tasks.get(code);
    while (task && task.status === 1 && task.progress !== task.hangAt) await this.advance(task.code);
  }

  private advanceAll(): void {
    for (const task of this.tasks.values()) if (task.status === 1 && !task.rendering) this.step(task);
  }

  private step(task: Task): void {
    if (task.hangAt !== undefined && task.progress >= task.hangAt) return;
    if (task.fail && task.progress >= task.fail.afterProgress) {
      task.status = 3;
      task.msg = task.fail.msg;
      return;
    }
    const next = STEPS[task.step];
    if (!next) return;
    task.step += 1;
    if (next.progress < 100) {
      task.progress = next.progress;
      task.msg = next.msg;
      return;
    }
    // The file is complete before the task says so, as in the container.
    task.rendering ??= this.render(task).then(
      () => {
        task.progress = 100;
        task.msg = next.msg;
        task.result = `/${task.code}-r.mp4`;
        task.status = 2;
      },
      (err: unknown) => {
        task.status = 3;
        task.msg = `render error: ${String(err)}`;
      },
    );
  }

  private async render(task: Task): Promise<void> {
    const out = join(this.tempDir, `${task.code}-r.mp4`);
    if (this.options.render === "mux") {
      await runFfmpeg([
        "-v",
        "error",
        "-i",
        task.video,
        "-i",
        task.audio,
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
        out,
      ]);
    } else {
      await copyFile(task.video, out);
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://emulator");
    if (req.method === "POST" && url.pathname === "/easy/submit") {
      const body = await readJson(req);
      return reply(res, await this.submit(body));
    }
    if (req.method === "GET" && url.pathname === "/easy/query") {
      this.parallelQueries += 1;
      this.maxParallelQueries = Math.max(this.maxParallelQueries, this.parallelQueries);
      try {
        // A moment in which a second, overlapping query would be seen.
        await delay(2);
        const code = url.searchParams.get("code") ?? "";
        this.queries.push(code);
        return reply(res, this.query(code));
      } finally {
        this.parallelQueries -= 1;
      }
    }
    res.statusCode = 404;
    res.setHeader("content-type", "text/html; charset=utf-8");
    res.end("<h1>Not Found</h1>");
  }

  private async submit(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = (code: number, msg: string | number, success = true) => {
      this.submits.push({ body, reply: code });
      return { code, data: {}, msg, success };
    };
    for (const field of ["audio_url", "video_url", "code"]) {
      if (typeof body[field] !== "string" || body[field] === "")
        return answer(10002, `${field}参数缺失`, false);
    }
    if (this.occupied || this.running !== undefined) return answer(10001, "忙碌中");
    const code = String(body.code);
    const task: Task = {
      code,
      audio: this.resolve(String(body.audio_url)),
      video: this.resolve(String(body.video_url)),
      status: 1,
      progress: 0,
      msg: "",
      step: 0,
      result: "",
      fail: this.nextFail,
      hangAt: this.nextHang,
    };
    this.nextFail = undefined;
    this.nextHang = undefined;
    // A container that cannot see the file (wrong volume mapping) tries to read the audio's length
    // three times and gives up (heygem-contract.md, "Failure modes").
    if (!(await exists(task.audio))) {
      this.tasks.set(code, { ...task, status: 3, msg: "三次获取音频时长失败" });
    } else {
      this.tasks.set(code, task);
    }
    return answer(10000, 10000);
  }

  private query(code: string): Record<string, unknown> {
    const task = this.tasks.get(code);
    if (!task) return { code: 10004, data: {}, msg: "任务不存在", success: true };
    const data: Record<string, unknown> = {
      code: task.code,
      msg: task.msg,
      progress: task.progress,
      result: task.result,
      status: task.status,
    };
    if (task.status !== 1) {
      // The first read of a final status deletes the task (heygem-contract.md, "GET /easy/query").
      this.tasks.delete(code);
      if (task.status === 2) Object.assign(data, { cost: 1.5, video_duration: 2, width: 320, height: 240 });
    }
    return { code: 10000, data, msg: "", success: true };
  }

  /** Bare names resolve against /code/data/temp, container paths against the data folder. */
  private resolve(name: string): string {
    if (name.startsWith("/code/data/")) return join(this.dir, name.slice("/code/data/".length));
    return join(this.tempDir, name);
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Flask returning `json.dumps(...)`: text/html, Python's separators, non-ASCII as \uXXXX. */
function reply(res: ServerResponse, body: unknown): void {
  res.statusCode = 200;
  res.setHeader("content-type", "text/html; charset=utf-8");
  res.end(pyDumps(body));
}

function pyDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") {
    return JSON.stringify(value).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(pyDumps).join(", ")}]`;
  const entries = Object.entries(value as Record<string, unknown>);
  return `{${entries.map(([k, v]) => `${pyDumps(k)}: ${pyDumps(v)}`).join(", ")}}`;
}
