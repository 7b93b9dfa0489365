import { randomUUID } from "node:crypto";
import { closeSync, fsync, openSync, renameSync, writeFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { makeDir } from "../make-dir.js";
import { BlobRef, JobOptions, JobView, SpeechRequest } from "../protocol/schemas.js";
import { removeFile } from "../remove-file.js";

const fsyncAsync = promisify(fsync);

/** What a job was asked to do, with the options already filled in with their defaults. */
export const JobInput = Type.Object({
  /** Exactly one of `audio` and `speech` (a text job speaks its audio first). */
  audio: Type.Optional(BlobRef),
  speech: Type.Optional(SpeechRequest),
  video: BlobRef,
  options: JobOptions,
  audio_duration: Type.Optional(Type.Number({ minimum: 0 })),
  max_audio_seconds: Type.Optional(Type.Number({ minimum: 1 })),
});
export type JobInput = Static<typeof JobInput>;

/** One job as kept on disk: its public view plus what is needed to run it again after a restart. */
export const JobRecord = Type.Object({
  /** Acceptance order, so queued jobs keep their FIFO place across a restart. */
  seq: Type.Integer({ minimum: 0 }),
  input: JobInput,
  view: JobView,
  /** What the engine saved when its backend accepted the job (engine.ts, `ResumeState`). */
  resume: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});
export type JobRecord = Static<typeof JobRecord>;

export const RESTARTED_WHILE_RUNNING = "the worker agent restarted while this job was running";

/**
 * A record as the agent should serve it after a restart (design.md: "Anything held only in memory
 * must be rebuildable"). A run cannot survive its process, so a job found `running` failed, and
 * the blame is the machine's: the gateway is free to run it again elsewhere. The exception is a
 * job whose backend works on outside the agent (a HeyGem container) and which saved how to find
 * it again: with `canResume`, it stays `running` for the engine to resume.
 */
export function recoverRecord(record: JobRecord, now: Date, canResume = false): JobRecord {
  if (record.view.status !== "running") return record;
  if (canResume && record.resume !== undefined) return record;
  return failRecord(record, now, RESTARTED_WHILE_RUNNING);
}

/** The record as failed by the machine, `now`, for `message`; a last step or result is dropped. */
export function failRecord(record: JobRecord, now: Date, message: string): JobRecord {
  const { message: _lastStep, result: _result, ...view } = record.view;
  const { resume: _resume, ...rest } = record;
  return {
    ...rest,
    view: {
      ...view,
      status: "failed",
      error: { kind: "machine", message },
      finished_at: now.toISOString(),
      version: view.version + 1,
    },
  };
}

/**
 * Whether a repeated PUT asks for the same job: the same content and options. File names only
 * pick extensions, and the duration is the gateway's probe of the same audio, so neither counts.
 */
export function sameInput(a: JobInput, b: JobInput): boolean {
  return (
    a.audio?.sha256 === b.audio?.sha256 &&
    sameSpeech(a.speech, b.speech) &&
    a.video.sha256 === b.video.sha256 &&
    a.options.chaofen === b.options.chaofen &&
    a.options.watermark_switch === b.options.watermark_switch &&
    a.options.pn === b.options.pn
  );
}

/** Text, language, voice content and settings; the reference's file name only picks an extension. */
function sameSpeech(a: SpeechRequest | undefined, b: SpeechRequest | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const key = (s: SpeechRequest) =>
    JSON.stringify([
      s.text,
      s.lang,
      s.voice?.id,
      s.voice?.reference.sha256,
      s.voice?.reference_text,
      s.settings?.temperature,
      s.settings?.top_p,
      s.settings?.chunk_length,
      s.settings?.repetition_penalty,
    ]);
  return key(a) === key(b);
}

/** The blobs a job reads: its audio or its voice's reference, and its video. */
export function inputBlobs(input: JobInput): { field: string; sha256: string }[] {
  const blobs = [{ field: "video", sha256: input.video.sha256 }];
  if (input.audio) blobs.unshift({ field: "audio", sha256: input.audio.sha256 });
  const reference = input.speech?.voice?.reference;
  if (reference) blobs.unshift({ field: "speech.voice.reference", sha256: reference.sha256 });
  return blobs;
}

interface WriteSlot {
  /** The newest text not yet handed to a write, and the promise of the write that will carry it. */
  pendingText: string | undefined;
  pending: Promise<void> | undefined;
  inFlight: Promise<void> | undefined;
}

/**
 * Durable job records, one `<id>.json` each, replaced atomically (temp file, fsync, rename) so a
 * crash leaves either the old or the new record, never half of one.
 *
 * Progress ticks can come faster than the disk, so writes for one job are serialised and
 * coalesced: at most one in flight, and only the newest state waits behind it.
 */
export class JobRecords {
  private readonly slots = new Map<string, WriteSlot>();

  constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Reads every record, dropping leftovers of interrupted writes; unreadable files are skipped. */
  async loadAll(): Promise<JobRecord[]> {
    await makeDir(this.dir);
    const records: JobRecord[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith(".tmp")) {
        await removeFile(path);
        continue;
      }
      if (!name.endsWith(".json")) continue;
      try {
        const parsed: unknown = JSON.parse(await readFile(path, "utf8"));
        if (!Value.Check(JobRecord, parsed)) throw new Error("does not match the job record schema");
        if (`${parsed.view.id}.json` !== name) throw new Error(`holds job ${parsed.view.id}`);
        records.push(parsed);
      } catch (err) {
        // Kept in place for a person to look at; a new job with this id will replace it.
        this.logger.warn({ file: path, err: errorMessage(err) }, "skipping an unreadable job record");
      }
    }
    return records.sort((a, b) => a.seq - b.seq);
  }

  /** Resolves once this state (or a newer one) of the record is on disk. */
  save(record: JobRecord): Promise<void> {
    const id = record.view.id;
    let slot = this.slots.get(id);
    if (!slot) {
      slot = { pendingText: undefined, pending: undefined, inFlight: undefined };
      this.slots.set(id, slot);
    }
    slot.pendingText = JSON.stringify(record);
    if (slot.pending) return slot.pending;
    const owned = slot;
    owned.pending = (async () => {
      await owned.inFlight?.catch(() => undefined);
      const text = owned.pendingText;
      owned.pendingText = undefined;
      owned.pending = undefined;
      if (text === undefined) return;
      const write = this.writeAtomic(id, text);
      owned.inFlight = write;
      try {
        await write;
      } finally {
        if (owned.inFlight === write) owned.inFlight = undefined;
        if (!owned.inFlight && !owned.pending && this.slots.get(id) === owned) this.slots.delete(id);
      }
    })();
    return owned.pending;
  }

  /** Deletes the record once writes already asked for have landed, so none can bring it back. */
  async remove(id: string): Promise<void> {
    await this.settle(id);
    await removeFile(join(this.dir, `${id}.json`));
  }

  /** Waits for every write asked for so far. */
  async flush(): Promise<void> {
    await Promise.all([...this.slots.keys()].map((id) => this.settle(id)));
  }

  private async settle(id: string): Promise<void> {
    for (;;) {
      const slot = this.slots.get(id);
      const waitFor = slot?.pending ?? slot?.inFlight;
      if (!waitFor) return;
      await waitFor.catch(() => undefined);
    }
  }

  private async writeAtomic(id: string, text: string): Promise<void> {
    const final = join(this.dir, `${id}.json`);
    const tmp = join(this.dir, `${id}.${randomUUID()}.tmp`);
    try {
      // A record is a few hundred bytes on the agent's own disk: opening, writing, closing and
      // renaming it take microseconds in place, less than one trip through the thread pool each
      // (0.1 ms of CPU on a VM), and a job's start waits for this write. Only the fsync, which
      // may wait on the disk for as long as it is busy, leaves the event loop.
      const fd = openSync(tmp, "w");
      try {
        writeFileSync(fd, text);
        await fsyncAsync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, final);
    } catch (err) {
      await removeFile(tmp);
      throw err;
    }
  }
}
