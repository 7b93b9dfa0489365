import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { encodeWav, parseWav } from "../../src/engines/speech/wav.js";

/**
 * An emulator of HeyGem's fish-speech container, built from heygem-tts-contract.md with its quirks:
 * every preprocess reply is HTTP 200 (`code: -1` for a failure), `format` must be dotless (".wav"
 * fails validation), several segments come back as `|||` lists, `/v1/invoke` answers 400 for text
 * over `maxTextLength` and otherwise the audio bytes themselves (a real WAV: 16 kHz mono, 10 ms of a
 * tone per character), and one request at a time: a request that arrives while another is served
 * waits for it (the server's single worker), which `maxParallel` records.
 *
 * Tests steer it: `asrDown` (preprocess answers `code: -1` about the ASR connection), `segments`,
 * `stop`/`start`, `hangInvoke`; a reference that is not in its folder gets "file not exists", and
 * a WAV reference of pure silence is heard as nothing (success with an empty transcript, as a
 * speech recogniser answers silence; the contract is silent on it).
 */
export class TtsEmulator {
  readonly dir: string;
  readonly prepares: Record<string, unknown>[] = [];
  readonly invokes: Record<string, unknown>[] = [];
  /** The most requests that were ever being answered at once (never above 1). */
  maxParallel = 0;
  asrDown = false;
  hangInvoke = false;
  /** How many segments a prepared voice has (its fields become `|||` lists). */
  segments = 1;
  maxTextLength = 300;
  readonly sampleRate = 16_000;
  private parallel = 0;
  private queue: Promise<void> = Promise.resolve();
  private server: Server | undefined;
  private port = 0;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async start(options: { dir?: string } = {}): Promise<TtsEmulator> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "mh-tts-")));
    const emulator = new TtsEmulator(dir);
    await emulator.start();
    return emulator;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `--tts` value for a worker that sees this container's data folder. */
  get flag(): string {
    return `${this.url}=${this.dir}`;
  }

  /** Samples the emulator speaks for `text`: 10 ms per character. */
  samplesFor(text: string): number {
    return [...text].length * (this.sampleRate / 100);
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      // One request at a time, the others waiting their turn, as the container's single worker.
      const turn = this.queue.then(() => this.serve(req, res));
      this.queue = turn.catch(() => undefined);
      turn.catch((err: unknown) => {
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
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A restart with an empty voice folder: every processed reference is gone. */
  async emptyFolder(): Promise<void> {
    await rm(join(this.dir, "processed"), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.parallel++;
    this.maxParallel = Math.max(this.maxParallel, this.parallel);
    try {
      const body = await readJson(req);
      const url = req.url ?? "";
      if (url === "/v1/health") return json(res, 200, { status: "ok" });
      if (url === "/v1/preprocess_and_tran") return json(res, 200, await this.preprocess(body));
      if (url === "/v1/invoke") return await this.invoke(body, res);
      json(res, 404, { detail: "Not Found" });
    } finally {
      this.parallel--;
    }
  }

  private async preprocess(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.prepares.push(body);
    const format = body.format;
    if (format !== "wav" && format !== "mp3" && format !== "flac") {
      return { code: -1, msg: `format ${String(format)} not supported, use wav, mp3 or flac` };
    }
    if (this.asrDown) {
      return {
        code: -1,
        msg: "ASR service error: Cannot connect to host 127.0.0.1:10095 [Connection refused]",
      };
    }
    const reference = typeof body.reference_audio === "string" ? body.reference_audio : "";
    const path = join(this.dir, ...posix.normalize(reference).split("/"));
    if (reference === "" || reference.startsWith("..") || !(await isFile(path))) {
      return { code: -1, msg: "file not exists" };
    }
    const heard = !(await isSilentWav(path));
    await mkdir(join(this.dir, "processed"), { recursive: true });
    const urls: string[] = [];
    const texts: string[] = [];
    for (let i = 0; i < this.segments; i++) {
      const name = `processed/${Date.now()}-${Math.random().toString(16).slice(2)}-${i}.wav`;
      await writeFile(join(this.dir, name), this.wav("参考"));
      urls.push(`/code/data/${name}`);
      texts.push(heard ? `参考文本${i}` : "");
    }
    return {
      code: 0,
      msg: "success",
      reference_audio_text: texts.join("|||"),
      asr_format_audio_url: urls.join("|||"),
    };
  }

  private async invoke(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    this.invokes.push(body);
    if (this.hangInvoke) return new Promise(() => {});
    const text = typeof body.text === "string" ? body.text : "";
    if ([...text].length > this.maxTextLength) {
      return json(res, 400, { detail: `Text is too long, max length is ${this.maxTextLength}` });
    }
    const references = typeof body.reference_audio === "string" ? body.reference_audio.split("|||") : [];
    const texts = typeof body.reference_text === "string" ? body.reference_text.split("|||") : [];
    if (references.length !== texts.length)
      return json(res, 200, { code: -1, msg: "reference_text count mismatch" });
    for (const reference of references) {
      const local = join(this.dir, reference.replace(/^\/code\/data\//, ""));
      if (!(await isFile(local)))
        return json(res, 200, { code: -1, msg: `reference ${reference} file not exists` });
    }
    res.writeHead(200, { "content-type": "audio/wav" });
    res.end(this.wav(text));
  }

  private wav(text: string): Buffer {
    const samples = Buffer.alloc(this.samplesFor(text) * 2);
    for (let i = 0; i < samples.length / 2; i++) {
      samples.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / this.sampleRate)), i * 2);
    }
    return encodeWav({ format: { channels: 1, sampleRate: this.sampleRate, bitsPerSample: 16 }, samples });
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return {};
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function isSilentWav(path: string): Promise<boolean> {
  let samples: Buffer;
  try {
    samples = parseWav(await readFile(path)).samples;
  } catch {
    return false;
  }
  return samples.every((byte) => byte === 0);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
