import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CommandEngine,
  type CommandEngineSettings,
  parseProgressLine,
} from "../../src/engines/command-engine.js";
import { parseCommandTemplate } from "../../src/engines/command-template.js";
import type { EngineJob, EngineRunContext } from "../../src/engines/engine.js";
import { EngineError } from "../../src/errors.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { until } from "../helpers/until.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/commands/", import.meta.url));
/** `'<node>' '<fixtures>/<script>'`, quoted as a user would quote paths in --command. */
const node = (script: string) => `'${process.execPath}' '${join(FIXTURES, script)}'`;

let dir: string;
let video: string;
let audio: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "command-engine-"));
  video = join(dir, "template.mp4");
  audio = join(dir, "speech.wav");
  await makeVideo(video, { seconds: 1, width: 64, height: 48 });
  await makeAudio(audio, { seconds: 1 });
});
afterEach(async () => {
  // A safety net should a kill test fail: its hanging processes must not outlive it.
  const pidsFile = join(dir, "pids.json");
  if (existsSync(pidsFile)) {
    const pids = JSON.parse(readFileSync(pidsFile, "utf8")) as Record<string, number>;
    for (const pid of Object.values(pids)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  await rm(dir, { recursive: true, force: true });
});

function settings(command: string, extra: Partial<CommandEngineSettings> = {}): CommandEngineSettings {
  return {
    template: parseCommandTemplate(command),
    timeoutMs: undefined,
    inputExitCodes: [],
    cwd: undefined,
    ...extra,
  };
}

async function jobIn(workDir: string, inputs: { audio?: string; video?: string } = {}): Promise<EngineJob> {
  await mkdir(workDir, { recursive: true });
  return {
    id: "job-7",
    audioPath: inputs.audio ?? audio,
    videoPath: inputs.video ?? video,
    outputPath: join(workDir, "output.mp4"),
    workDir,
    options: { chaofen: 0, watermark_switch: 0, pn: 1 },
  };
}

interface Recorder extends EngineRunContext {
  readonly progress: Array<{ progress: number; message: string | undefined }>;
}

function recorder(signal: AbortSignal = new AbortController().signal): Recorder {
  const progress: Recorder["progress"] = [];
  return { signal, progress, onProgress: (p, message) => progress.push({ progress: p, message }) };
}

async function failure(promise: Promise<unknown>): Promise<EngineError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof EngineError)) throw new Error(`expected an EngineError, got ${String(err)}`);
  return err;
}

/** Alive, and not a zombie waiting for a parent that is not ours to reap it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // No /proc here (macOS): kill(0) has the last word.
    return true;
  }
  // "pid (comm) S …": comm may hold spaces and parentheses, the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(")") + 2)[0];
  return state !== "Z" && state !== "X";
}

describe("CommandEngine", () => {
  it("runs the command with the job's files and keeps the MP4 it writes", async () => {
    const job = await jobIn(join(dir, "work"));
    const record = join(dir, "record.json");
    const engine = new CommandEngine(settings(`${node("copy-video.mjs")} {video} {output} '${record}'`), {
      env: { ...process.env, CUDA_VISIBLE_DEVICES: "1", MULTI_HEYGEM_WORKER_TOKEN: "s3cret" },
    });
    const ctx = recorder();

    await engine.run(job, ctx);

    expect((await probe(job.outputPath)).video).toMatchObject({ width: 64, height: 48 });
    const seen: unknown = JSON.parse(await readFile(record, "utf8"));
    expect(seen).toEqual({
      argv: [video, job.outputPath, record],
      cwd: job.workDir,
      jobId: "job-7",
      // The worker's environment goes through, its own settings (the token above all) do not.
      cudaDevices: "1",
      token: null,
    });
    expect(ctx.progress.at(-1)).toEqual({ progress: 100, message: "done" });
  });

  it("passes file names with spaces, quotes and shell syntax as single arguments, never interpreted", async () => {
    const odd = join(dir, `we$(touch pwned) ; rm -rf nothing "and" 'this' \`id\` & |`);
    await mkdir(odd);
    const oddVideo = join(odd, "my video $HOME;.mp4");
    await makeVideo(oddVideo, { seconds: 1, width: 64, height: 48 });
    const job = await jobIn(join(odd, "work dir"), { video: oddVideo });
    const record = join(dir, "record.json");
    const engine = new CommandEngine(
      settings(`${node("copy-video.mjs")} {video} {output} '${record}'`, { cwd: odd }),
    );

    await engine.run(job, recorder());

    const seen = JSON.parse(await readFile(record, "utf8")) as { argv: string[] };
    expect(seen.argv).toEqual([oddVideo, job.outputPath, record]);
    expect((await probe(job.outputPath)).video).toBeDefined();
    for (const place of [dir, odd, job.workDir, process.cwd()]) {
      expect(await readdir(place)).not.toContain("pwned");
    }
  });

  it("fails with the tail of stderr when the command exits non-zero, blaming the machine", async () => {
    const job = await jobIn(join(dir, "work"));
    const engine = new CommandEngine(
      settings(`${node("fail.mjs")} 1 60 'CUDA error: out of memory' {output}`),
    );

    const err = await failure(engine.run(job, recorder()));

    expect(err.kind).toBe("machine");
    expect(err.message).toMatch(/^the command failed \(exit code 1\): /);
    expect(err.message).toContain("CUDA error: out of memory");
    expect(err.message).toContain("Traceback (most recent call last):");
    // Only the tail: the first lines of noise are gone, and the message stays small.
    expect(err.message).not.toContain("log line 1 of");
    expect(err.message.length).toBeLessThan(2300);
    expect(err.message.split("\n").length).toBeLessThanOrEqual(20);
  });

  it("blames the input for a declared input-fault exit code", async () => {
    const job = await jobIn(join(dir, "work"));
    const engine = new CommandEngine(
      settings(`${node("fail.mjs")} 3 0 'ValueError: Face not detected!' {output}`, {
        inputExitCodes: [2, 3],
      }),
    );

    const err = await failure(engine.run(job, recorder()));

    expect(err.kind).toBe("input");
    expect(err.message).toMatch(/rejected the input \(exit code 3\).*Face not detected!/s);
  });

  it("fails when the command exits 0 without writing a video", async () => {
    const job = await jobIn(join(dir, "work"));
    const silent = new CommandEngine(settings(`'${process.execPath}' -e '' {output}`));
    const nothing = await failure(silent.run(job, recorder()));
    expect(nothing.kind).toBe("machine");
    expect(nothing.message).toContain("exited 0 but wrote nothing to {output}");

    const audioOnly = new CommandEngine(settings(`${node("copy-video.mjs")} {audio} {output}`));
    const notVideo = await failure(audioOnly.run(job, recorder()));
    expect(notVideo.kind).toBe("machine");
    expect(notVideo.message).toContain("{output} is not a video");
  });

  it("kills a command that runs past the timeout, and the child it started", async () => {
    const job = await jobIn(join(dir, "work"));
    const pidsFile = join(dir, "pids.json");
    const engine = new CommandEngine(
      settings(`${node("hang.mjs")} '${pidsFile}' {output}`, { timeoutMs: 1_000 }),
      {
        killGraceMs: 200,
      },
    );

    const err = await failure(engine.run(job, recorder()));

    expect(err.kind).toBe("machine");
    expect(err.message).toContain("--command-timeout (1 s)");
    expect(err.message).toContain("hang: working forever");
    const pids = JSON.parse(await readFile(pidsFile, "utf8")) as { command: number; child: number };
    await until(() => !alive(pids.command) && !alive(pids.child), 5_000, {
      what: "the process group to die",
    });
  });

  it("stops the command and its children when the job is aborted", async () => {
    const job = await jobIn(join(dir, "work"));
    const pidsFile = join(dir, "pids.json");
    const engine = new CommandEngine(settings(`${node("hang.mjs")} '${pidsFile}' {output}`), {
      killGraceMs: 200,
    });
    const controller = new AbortController();

    const running = engine.run(job, recorder(controller.signal));
    const outcome = running.then(
      () => "resolved",
      (e: unknown) => e,
    );
    await until(() => existsSync(pidsFile), 10_000, { what: "the command to start" });
    const pids = JSON.parse(await readFile(pidsFile, "utf8")) as { command: number; child: number };
    expect(alive(pids.child)).toBe(true);
    controller.abort(new Error("cancelled by the client"));

    const err = await outcome;
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe("AbortError");
    await until(() => !alive(pids.command) && !alive(pids.child), 5_000, {
      what: "the process group to die",
    });
  });

  it("reports the progress the command prints, never backwards", async () => {
    const job = await jobIn(join(dir, "work"));
    const engine = new CommandEngine(settings(`${node("progress.mjs")} {video} {output}`));
    const ctx = recorder();

    await engine.run(job, ctx);

    const values = ctx.progress.map((p) => p.progress);
    expect(values.every((v, i) => i === 0 || v >= (values[i - 1] ?? 0))).toBe(true);
    expect(values).toEqual(expect.arrayContaining([10, 20, 40, 50, 62, 95, 100]));
    expect(values).not.toContain(85);
    expect(ctx.progress).toContainEqual({ progress: 10, message: "loading model" });
    expect(ctx.progress).toContainEqual({ progress: 95, message: "writing video" });
  });

  it("puts the audio's duration into {audio_duration}, probing it when the job does not say", async () => {
    const job = await jobIn(join(dir, "work"));
    const record = join(dir, "record.json");
    const engine = new CommandEngine(
      settings(`${node("copy-video.mjs")} {video} {output} '${record}' {audio_duration} {job_id} {workdir}`),
    );

    await engine.run(job, recorder());

    const seen = JSON.parse(await readFile(record, "utf8")) as { argv: string[] };
    expect(seen.argv.slice(3)).toEqual(["1.000", "job-7", job.workDir]);
  });

  it("says which program could not be started", async () => {
    const job = await jobIn(join(dir, "work"));
    const engine = new CommandEngine(settings(`${join(dir, "no-such-program")} {output}`));
    const err = await failure(engine.run(job, recorder()));
    expect(err.kind).toBe("machine");
    expect(err.message).toContain("no-such-program");
  });
});

describe("parseProgressLine", () => {
  it.each([
    ["progress: 42", { percent: 42 }],
    ["progress=42.5", { percent: 42.5 }],
    ["PROGRESS 7% detecting faces", { percent: 7, message: "detecting faces" }],
    ["42%", { percent: 42 }],
    ["  3 %  ", { percent: 3 }],
    ["100%|██████████| 163/163 [00:41<00:00,  3.93it/s]", { percent: 100 }],
    ["Sample frames:  37%|███▋      | 30/81 [00:09<00:15,  3.32it/s]", { percent: 37 }],
  ])("%j is progress", (line, expected) => {
    expect(parseProgressLine(line)).toEqual(expected);
  });

  it.each([
    "GPU memory in use: 85% of 24 GB",
    "progress 3/10",
    "Loaded 42% of the weights from checkpoint",
    "progress: 140",
    "an ordinary line",
  ])("%j is not", (line) => {
    expect(parseProgressLine(line)).toBeUndefined();
  });
});
