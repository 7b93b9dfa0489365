import { FINAL_STATUSES, type Task } from "../client/client.js";
import type { Messages } from "./messages.js";
import { fitWidth } from "./table.js";
import { bytes, elapsed, rate } from "./units.js";

/**
 * What `submit` shows while it works, one row per task: first the upload (bytes, rate), then the
 * task (status, machine, percent, elapsed). On a terminal the rows are bars redrawn in place;
 * anywhere else (a pipe, a log file, CI) each change of status or machine is one plain line with
 * no escape codes. Both go to stderr: stdout carries only data (task ids) for scripts.
 *
 * Our own renderer rather than a bar library: a row changes shape half-way (upload bar, then task
 * bar, then the saved path), which the usual MultiBar libraries model as a fixed format per bar,
 * and the plain mode is not bars at all.
 */
export interface TaskRow {
  upload(sent: number, total: number | undefined): void;
  created(task: Task): void;
  update(task: Task): void;
  saved(path: string): void;
  refused(message: string): void;
  error(message: string): void;
}

export interface ProgressDisplay {
  row(label: string): TaskRow;
  /** A line of data on stdout (a task id), written without breaking the bars. */
  data(line: string): void;
  /** A line for people on stderr (the summary). */
  note(line: string): void;
  close(): void;
}

interface Row {
  label: string;
  phase: "upload" | "task" | "saved" | "refused" | "error";
  sent: number;
  total: number | undefined;
  uploadStarted: number;
  uploadEnded: number;
  task: Task | undefined;
  finishedAt: number | undefined;
  path: string | undefined;
  message: string | undefined;
}

type Change = "upload" | "created" | "status" | "progress" | "end";

export function createDisplay(
  m: Messages,
  streams: { err: NodeJS.WriteStream; out: NodeJS.WritableStream } = {
    err: process.stderr,
    out: process.stdout,
  },
  now: () => number = Date.now,
): ProgressDisplay {
  const renderer = streams.err.isTTY ? new TerminalBars(m, streams, now) : new PlainLines(m, streams, now);
  return {
    row: (label) => rowOf(label, renderer, now),
    data: (line) => renderer.data(line),
    note: (line) => renderer.note(line),
    close: () => renderer.close(),
  };
}

interface Renderer {
  add(row: Row): void;
  changed(row: Row, change: Change): void;
  data(line: string): void;
  note(line: string): void;
  close(): void;
}

function rowOf(label: string, renderer: Renderer, now: () => number): TaskRow {
  const row: Row = {
    label,
    phase: "upload",
    sent: 0,
    total: undefined,
    uploadStarted: now(),
    uploadEnded: 0,
    task: undefined,
    finishedAt: undefined,
    path: undefined,
    message: undefined,
  };
  renderer.add(row);
  const end = (phase: Row["phase"], message?: string) => {
    row.phase = phase;
    row.message = message;
    row.finishedAt ??= now();
    renderer.changed(row, "end");
  };
  return {
    upload(sent, total) {
      row.sent = sent;
      row.total = total;
      renderer.changed(row, "upload");
    },
    created(task) {
      row.phase = "task";
      row.uploadEnded = now();
      row.task = task;
      renderer.changed(row, "created");
    },
    update(task) {
      const before = row.task;
      row.task = task;
      if (FINAL_STATUSES.has(task.status)) row.finishedAt ??= now();
      else row.finishedAt = undefined;
      const moved = before?.status !== task.status || before?.machine !== task.machine;
      renderer.changed(row, moved ? "status" : "progress");
    },
    saved(path) {
      row.path = path;
      end("saved");
    },
    refused: (message) => end("refused", message),
    error: (message) => end("error", message),
  };
}

function uploadRate(row: Row, now: number): string {
  const seconds = Math.max((row.uploadEnded || now) - row.uploadStarted, 1) / 1000;
  return rate(row.sent / seconds);
}

/** One line per change that matters, for logs: no redraws, no escape codes. */
class PlainLines implements Renderer {
  constructor(
    private readonly m: Messages,
    private readonly streams: { err: NodeJS.WritableStream; out: NodeJS.WritableStream },
    private readonly now: () => number,
  ) {}

  add(): void {}

  changed(row: Row, change: Change): void {
    const { m } = this;
    const label = row.label;
    if (change === "created" && row.task) {
      this.note(
        m.t("progress.uploaded", {
          label,
          size: bytes(row.sent),
          time: m.t("seconds", { n: ((row.uploadEnded - row.uploadStarted) / 1000).toFixed(1) }),
          rate: uploadRate(row, this.now()),
          id: row.task.task_id,
        }),
      );
      this.status(row);
    } else if (change === "status") {
      this.status(row);
    } else if (change === "end") {
      if (row.phase === "saved") this.note(m.t("progress.saved", { label, path: row.path ?? "" }));
      else if (row.phase === "refused")
        this.note(m.t("progress.refused", { label, message: row.message ?? "" }));
      else if (row.phase === "error") this.note(m.t("progress.error", { label, message: row.message ?? "" }));
    }
  }

  private status(row: Row): void {
    const task = row.task;
    if (!task) return;
    const { m } = this;
    const status = m.word("status", task.status);
    const label = row.label;
    if (task.status === "failed" && task.error_message) {
      this.note(m.t("progress.failedBecause", { label, message: task.error_message }));
    } else if (FINAL_STATUSES.has(task.status)) {
      const time = elapsed((row.finishedAt ?? this.now()) - row.uploadEnded);
      this.note(m.t("progress.final", { label, status, time }));
    } else if (task.machine) {
      this.note(m.t("progress.statusOn", { label, status, machine: task.machine }));
    } else {
      this.note(m.t("progress.status", { label, status }));
    }
  }

  data(line: string): void {
    this.streams.out.write(`${line}\n`);
  }

  note(line: string): void {
    this.streams.err.write(`${line.replace(/\s*[\r\n]+\s*/g, " ")}\n`);
  }

  close(): void {}
}

const BAR_WIDTH = 20;
/** Redraws for byte counts and percents come at most this often; a change of status at once. */
const REDRAW_MS = 100;

/** Bars redrawn in place: the cursor goes back up over the rows drawn before and rewrites them. */
class TerminalBars implements Renderer {
  private readonly rows: Row[] = [];
  private drawn = 0;
  private pending: NodeJS.Timeout | undefined;
  /** Keeps the elapsed times moving while nothing else changes. */
  private readonly tick: NodeJS.Timeout;

  constructor(
    private readonly m: Messages,
    private readonly streams: { err: NodeJS.WriteStream; out: NodeJS.WritableStream },
    private readonly now: () => number,
  ) {
    this.tick = setInterval(() => this.draw(), 1000);
    this.tick.unref();
  }

  add(row: Row): void {
    this.rows.push(row);
    this.draw();
  }

  changed(_row: Row, change: Change): void {
    if (change === "upload" || change === "progress") {
      this.pending ??= setTimeout(() => this.draw(), REDRAW_MS);
      return;
    }
    this.draw();
  }

  data(line: string): void {
    this.clear();
    this.streams.out.write(`${line}\n`);
    this.draw();
  }

  note(line: string): void {
    this.clear();
    this.streams.err.write(`${line}\n`);
    this.draw();
  }

  close(): void {
    this.draw();
    clearInterval(this.tick);
    // The rows stay on screen as the record of what happened; lines written later go below them.
    this.rows.length = 0;
    this.drawn = 0;
  }

  private clear(): void {
    if (this.drawn > 0) this.streams.err.write(`\r\x1b[${this.drawn}A\x1b[0J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
    if (this.rows.length === 0) return;
    const columns = this.streams.err.columns || 80;
    const width = Math.min(24, Math.max(...this.rows.map((r) => r.label.length)));
    const now = this.now();
    let text = this.drawn > 0 ? `\r\x1b[${this.drawn}A` : "";
    for (const row of this.rows) {
      text += `\x1b[2K${fitWidth(this.line(row, width, now), columns - 1)}\n`;
    }
    this.streams.err.write(text);
    this.drawn = this.rows.length;
  }

  private line(row: Row, labelWidth: number, now: number): string {
    const { m } = this;
    const label = fitWidth(row.label, labelWidth).padEnd(labelWidth);
    if (row.phase === "upload") {
      const share = row.total ? row.sent / row.total : 0;
      const size = row.total === undefined ? bytes(row.sent) : `${bytes(row.sent)}/${bytes(row.total)}`;
      return `${label}  ${bar(share)} ${percent(share)}  ${m.word("status", "uploading")}  ${size}  ${uploadRate(row, now)}`;
    }
    if ((row.phase === "refused" || row.phase === "error") && !row.task) {
      return `${label}  ${row.message ?? ""}`;
    }
    const task = row.task;
    if (!task) return label;
    const share = task.status === "completed" ? 1 : task.progress / 100;
    const parts = [
      `${label}  ${bar(share)} ${percent(share)}`,
      m.word("status", task.status),
      task.machine ?? "-",
      elapsed((row.finishedAt ?? now) - row.uploadEnded),
    ];
    if (row.phase === "saved" && row.path) parts.push(`→ ${row.path}`);
    const problem = row.message ?? (task.status === "failed" ? task.error_message : null);
    if (problem) parts.push(problem);
    return parts.join("  ");
  }
}

function bar(share: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, share)) * BAR_WIDTH);
  return `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
}

function percent(share: number): string {
  return `${Math.round(Math.min(1, Math.max(0, share)) * 100)}%`.padStart(4);
}
