import { createWriteStream, type WriteStream } from "node:fs";
import { rename, stat } from "node:fs/promises";
import { join } from "node:path";

export type JournalEvent = "accepted" | "started" | "finished" | "deleted";

export interface JournalLine {
  at: string;
  job_id: string;
  event: JournalEvent;
  status?: string;
}

const ROTATE_BYTES = 16 * 1024 * 1024;

/**
 * An append-only log of every job's life on this machine (`<dataDir>/journal.jsonl`, one JSON
 * object a line). Job records are deleted once the gateway has the result; the journal stays,
 * so "what ran here, when, and how many at once" can be answered afterwards — by an operator
 * auditing a GPU's use, and by the tests that check `max_concurrent` from the worker's side.
 */
export class JobJournal {
  private stream: WriteStream | undefined;
  readonly path: string;

  constructor(
    dataDir: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.path = join(dataDir, "journal.jsonl");
  }

  async open(): Promise<void> {
    const size = await stat(this.path).then(
      (s) => s.size,
      () => 0,
    );
    if (size > ROTATE_BYTES) await rename(this.path, join(this.path, "..", "journal.1.jsonl"));
    this.stream = createWriteStream(this.path, { flags: "a" });
  }

  write(jobId: string, event: JournalEvent, status?: string): void {
    const line: JournalLine = { at: this.now().toISOString(), job_id: jobId, event };
    if (status !== undefined) line.status = status;
    this.stream?.write(`${JSON.stringify(line)}\n`);
  }

  async close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (stream) await new Promise<void>((resolve) => stream.end(resolve));
  }
}

/** Reads a journal back (tests, audits). */
export function parseJournal(text: string): JournalLine[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as JournalLine);
}

/**
 * The most jobs that were live at any one moment: from `from` (`started`: the engine ran them;
 * `accepted`: the gateway had placed them here) until finished or deleted.
 */
export function peakConcurrency(
  lines: readonly JournalLine[],
  from: "started" | "accepted" = "started",
): number {
  let running = 0;
  let peak = 0;
  const live = new Set<string>();
  for (const line of lines) {
    if (line.event === from && !live.has(line.job_id)) {
      live.add(line.job_id);
      running++;
      peak = Math.max(peak, running);
    } else if ((line.event === "finished" || line.event === "deleted") && live.delete(line.job_id)) {
      running--;
    }
  }
  return peak;
}
