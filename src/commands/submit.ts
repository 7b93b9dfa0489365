import { stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import type { Command } from "commander";
import { glob, isDynamicPattern } from "tinyglobby";
import { ApiError } from "../client/api-error.js";
import type { Client, Task } from "../client/client.js";
import { makeDir } from "../make-dir.js";
import {
  type ConnectionFlags,
  connect,
  EXIT,
  errorLine,
  runCommand,
  UsageError,
  withConnection,
} from "./connection.js";
import type { Messages } from "./messages.js";
import { createDisplay, type TaskRow } from "./progress-display.js";
import { elapsed } from "./units.js";

interface SubmitFlags extends ConnectionFlags {
  audio?: string[];
  text?: string[];
  voice?: string;
  lang?: string;
  video?: string;
  avatar?: string;
  description?: string;
  wait?: boolean;
  out?: string;
}

type Outcome = "created" | "completed" | "failed" | "cancelled";

export function registerSubmit(program: Command, m: Messages): void {
  withConnection(
    program
      .command("submit")
      .description(m.t("help.submit"))
      .option("--audio <files...>", m.t("opt.audio"))
      .option("--text <text>", m.t("opt.text"), (value: string, previous: string[] = []) => [
        ...previous,
        value,
      ])
      .option("--voice <id>", m.t("opt.voice"))
      .option("--lang <code>", m.t("opt.lang"))
      .option("--video <file>", m.t("opt.video"))
      .option("--avatar <id>", m.t("opt.avatar"))
      .option("--description <text>", m.t("opt.description"))
      .option("--wait", m.t("opt.wait"))
      .option("--out <path>", m.t("opt.out")),
    m,
  ).action((flags: SubmitFlags) => runCommand(() => submit(flags, m)));
}

async function submit(flags: SubmitFlags, m: Messages): Promise<number> {
  const client = connect(flags, m);
  const inputs = await taskInputs(flags, m);
  const person = await personOf(flags, m);
  if (flags.out !== undefined && !flags.wait) throw new UsageError(m.t("usage.outNeedsWait"));
  const outputs = flags.wait ? await resultPaths(inputs, flags.out, m) : [];

  const display = createDisplay(m);
  const started = Date.now();
  const outcomes: Outcome[] = [];
  const following: Promise<void>[] = [];
  // Stops the uploads and downloads under way when the batch cannot go on (the gateway went away)
  // or on Ctrl-C, so that no `.part` file is left behind; the tasks themselves go on at the gateway.
  const abort = new AbortController();
  let interrupted = false;
  const onInterrupt = () => {
    interrupted = true;
    abort.abort();
  };
  process.once("SIGINT", onInterrupt);
  try {
    for (const [i, input] of inputs.entries()) {
      const row = display.row(input.label);
      let task: Task;
      try {
        task = await client.createTask(
          {
            ...input.task,
            ...person,
            ...(flags.description === undefined ? {} : { description: flags.description }),
          },
          { onUpload: (sent, total) => row.upload(sent, total), signal: abort.signal },
        );
      } catch (err) {
        // One file's refusal (bad media, a full queue) leaves the others to try; a gateway that
        // cannot be reached or does not take the key would refuse every one, so that ends it.
        if (inputs.length === 1 || !(err instanceof ApiError) || refusesAll(err)) throw err;
        row.refused(errorLine(err));
        outcomes.push("failed");
        continue;
      }
      row.created(task);
      if (!flags.wait) {
        display.data(task.task_id);
        outcomes.push("created");
        continue;
      }
      const out = outputs[i] ?? `${task.task_id}.mp4`;
      following.push(follow(client, task, out, row, abort.signal).then((o) => void outcomes.push(o)));
    }
    await Promise.all(following);
  } catch (err) {
    abort.abort();
    await Promise.allSettled(following);
    if (!interrupted) throw err;
  } finally {
    process.off("SIGINT", onInterrupt);
    display.close();
  }
  if (interrupted) {
    display.note(m.t("summary.interrupted"));
    return EXIT.interrupted;
  }

  if (flags.wait) {
    const count = (o: Outcome) => outcomes.filter((x) => x === o).length;
    display.note(
      m.t("summary.counts", {
        completed: count("completed"),
        failed: count("failed"),
        cancelled: count("cancelled"),
        time: elapsed(Date.now() - started),
      }),
    );
    if (count("completed") > 0) {
      display.note(
        inputs.length === 1
          ? m.t("summary.savedFile", { path: outputs[0] ?? "" })
          : m.t("summary.savedDir", { path: flags.out ?? "." }),
      );
    }
  }
  const wanted: Outcome = flags.wait ? "completed" : "created";
  return outcomes.length === inputs.length && outcomes.every((o) => o === wanted) ? EXIT.ok : EXIT.failed;
}

function refusesAll(err: ApiError): boolean {
  return err.status === 0 || err.status === 401 || err.status === 403 || err.status === 404;
}

async function follow(
  client: Client,
  task: Task,
  out: string,
  row: TaskRow,
  signal: AbortSignal,
): Promise<Outcome> {
  try {
    const final = await client.waitFor(task.task_id, { onUpdate: (t) => row.update(t), signal });
    row.update(final);
    if (final.status !== "completed") return final.status === "cancelled" ? "cancelled" : "failed";
    await client.saveResult(task.task_id, out, { signal });
    row.saved(out);
    return "completed";
  } catch (err) {
    if (!signal.aborted) row.error(errorLine(err));
    return "failed";
  }
}

/** One task to create: what is said (a file or a text), and the name it shows and is saved under. */
interface TaskInput {
  readonly label: string;
  /** The result's default file name, without extension. */
  readonly stem: string;
  readonly task: { audio: string } | { text: string; voiceId?: string; lang?: string };
}

/** Each audio file makes a task, or each `--text` does (with `--voice`, `--lang`); not both. */
async function taskInputs(flags: SubmitFlags, m: Messages): Promise<TaskInput[]> {
  const texts = flags.text ?? [];
  if ((flags.audio === undefined) === (texts.length === 0)) throw new UsageError(m.t("usage.audioOrText"));
  if (flags.audio !== undefined) {
    if (flags.voice !== undefined || flags.lang !== undefined)
      throw new UsageError(m.t("usage.voiceNeedsText"));
    return (await audioFiles(flags.audio, m)).map((audio) => ({
      label: basename(audio),
      stem: basename(audio, extname(audio)),
      task: { audio },
    }));
  }
  return texts.map((text, i) => ({
    label: text.length > 24 ? `${text.slice(0, 23)}…` : text,
    stem: texts.length === 1 ? "text" : `text-${i + 1}`,
    task: {
      text,
      ...(flags.voice === undefined ? {} : { voiceId: flags.voice }),
      ...(flags.lang === undefined ? {} : { lang: flags.lang }),
    },
  }));
}

/** The person: a video file uploaded with each task, or an avatar uploaded once; not both. */
async function personOf(flags: SubmitFlags, m: Messages): Promise<{ video: string } | { avatarId: string }> {
  if ((flags.video === undefined) === (flags.avatar === undefined))
    throw new UsageError(m.t("usage.videoOrAvatar"));
  if (flags.avatar !== undefined) return { avatarId: flags.avatar };
  const video = flags.video ?? "";
  await mustBeFile(video, m);
  return { video };
}

/**
 * The audio files: each argument a file, or a glob (quoted, so that we expand it: the same on
 * every shell, and a pattern that matches nothing is an error instead of a literal name).
 */
async function audioFiles(args: readonly string[], m: Messages): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    const info = await stat(arg).catch(() => undefined);
    if (info?.isFile()) {
      files.push(arg);
    } else if (!info && isDynamicPattern(arg)) {
      const matches = (await glob(arg, { onlyFiles: true, expandDirectories: false })).sort();
      if (matches.length === 0) throw new UsageError(m.t("usage.noMatch", { pattern: arg }));
      files.push(...matches);
    } else {
      throw new UsageError(m.t(info ? "usage.notFile" : "usage.missing", { path: arg }));
    }
  }
  return [...new Set(files)];
}

async function mustBeFile(path: string, m: Messages): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new UsageError(m.t(info ? "usage.notFile" : "usage.missing", { path }));
}

/**
 * Where each result goes: for one task `--out` is the file (or a directory to put it in), for
 * many a directory; the default name is the audio's, as `.mp4`, in the current directory.
 */
async function resultPaths(
  inputs: readonly TaskInput[],
  out: string | undefined,
  m: Messages,
): Promise<string[]> {
  const named = (input: TaskInput) => `${input.stem}.mp4`;
  const info = out === undefined ? undefined : await stat(out).catch(() => undefined);
  const first = inputs[0];
  if (inputs.length === 1 && first && !info?.isDirectory()) {
    const path = out ?? named(first);
    await makeDir(dirname(path));
    return [path];
  }
  if (info && !info.isDirectory()) throw new UsageError(m.t("usage.notDir", { path: out ?? "" }));
  if (out !== undefined) await makeDir(out);
  const paths = inputs.map((input) => join(out ?? "", named(input)));
  for (const [i, path] of paths.entries()) {
    const earlier = paths.indexOf(path);
    if (earlier !== i) {
      throw new UsageError(
        m.t("usage.sameName", { a: inputs[earlier]?.label ?? "", b: inputs[i]?.label ?? "", out: path }),
      );
    }
  }
  return paths;
}
