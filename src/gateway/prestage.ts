import { createHash } from "node:crypto";
import { PassThrough, type Readable, Transform, type TransformCallback } from "node:stream";
import { BoundedMap } from "../bounded-map.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { needMet, type TaskNeed } from "../store/task-speech.js";
import type { Clock, Timer } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";
import type { SpeedModel } from "./speed-model.js";

export interface Forwarded {
  readonly machine: Machine;
  readonly sha256: string;
  /** The machine did not hold this content before (so a refused task should take it back). */
  readonly created: boolean;
  /**
   * The task this upload came with was created (and the machine is known to hold the copy) or
   * refused (and the copy taken back): until then the same template is not forwarded again.
   */
  settle(): void;
}

/** A copy of a file sent ahead to a machine. */
interface OnItsWay {
  readonly machine: Machine;
  /** Resolves once the machine has it (or undefined when the send failed or stopped). */
  readonly landed: Promise<Forwarded | undefined>;
}

/** Below this much buffered-but-unsent data the client never waits on the machine. */
const BUFFER_BYTES = 1024 * 1024;
const CHECK_EVERY_MS = 250;
/** Enough of a file to recognise a template seen before, before deciding to send it. */
const PREFIX_BYTES = 1024 * 1024;
const PREFIXES_KEPT = 10_000;

/**
 * Copies a template video to the machine most likely to run its task while the client is still
 * uploading it, so a big first-time video crosses the network once in the time it takes, not
 * twice in a row (gateway, then machine). It is only a head start: if the task lands elsewhere, or
 * the machine is slow or fails, the dispatcher uploads as usual. A machine that keeps the copy
 * waiting longer than `stallMs` is dropped from it, so it can never hold a client's upload up.
 *
 * The same avatar video comes back thousands of times, and its hash is known only once it has all
 * arrived. So the decision waits for the first megabyte: a file that starts like a template a
 * machine already holds (or one sent for a task not yet created) is not sent again.
 */
export class Prestager {
  /** sha256 of a file's first megabyte → sha256 of the whole file, for files forwarded before. */
  private readonly prefixes = new BoundedMap<string, string>(PREFIXES_KEPT);
  /**
   * Files on their way to a machine, or there already but not yet known to be (their task not yet
   * created), by prefix: a second upload of the same template meanwhile is not sent again.
   */
  private readonly inFlight = new Map<string, OnItsWay>();

  constructor(
    private readonly options: {
      clock: Clock;
      fleet: Fleet;
      speeds: SpeedModel;
      logger: Logger;
      stallMs: number;
    },
  ) {}

  /**
   * Starts forwarding `source`; undefined when no machine has a free slot to run it now. `need`:
   * what the task needs of its machine, as far as the form has told yet (a text task: issue 12).
   */
  forward(source: Readable, need: TaskNeed = "lipsync"): Promise<Forwarded | undefined> | undefined {
    // Its "close" has passed already, so nothing below would ever stop (a form cut short).
    if (source.destroyed || !this.pick(need)) return undefined;
    const head = new PrefixHasher(PREFIX_BYTES);
    const sink = new PassThrough({ highWaterMark: BUFFER_BYTES });
    const abort = new AbortController();
    const stop = (why: string) => {
      if (abort.signal.aborted) return;
      abort.abort(new Error(why));
      source.unpipe(head);
      head.destroy();
      sink.destroy();
    };
    source.once("error", () => stop("the client's upload failed"));
    source.once("close", () => {
      if (!source.readableEnded) stop("the client's upload ended early");
    });
    source.pipe(head).pipe(sink);
    const prefixOrStop = new Promise<string | undefined>((resolve) => {
      head.once("prefix", resolve);
      abort.signal.addEventListener("abort", () => resolve(undefined), { once: true });
    });
    return prefixOrStop.then((prefix) => {
      if (prefix === undefined) return undefined;
      const known = this.prefixes.get(prefix);
      if (known && this.options.fleet.list().some((m) => m.placeable && m.hasBlob(known))) {
        stop("a machine already holds this template");
        return undefined;
      }
      const underWay = this.inFlight.get(prefix);
      if (underWay) {
        // Nothing of this upload goes to the machine; the rest is only counted, to its end.
        head.unpipe(sink);
        sink.destroy();
        head.resume();
        return this.join(underWay, head, abort.signal);
      }
      const machine = this.pick(need);
      if (!machine || abort.signal.aborted) {
        stop("no machine is free");
        return undefined;
      }
      const entry: OnItsWay = {
        machine,
        landed: this.send(machine, sink, abort, stop).then((stored) => {
          if (!stored) {
            this.inFlight.delete(prefix);
            return undefined;
          }
          this.prefixes.set(prefix, stored.sha256);
          const settle = () => {
            // Only its own entry: a later upload of the same template may hold the prefix by then.
            if (this.inFlight.get(prefix) === entry) this.inFlight.delete(prefix);
          };
          return { machine, ...stored, settle };
        }),
      };
      this.inFlight.set(prefix, entry);
      return entry.landed;
    });
  }

  /**
   * This task counts on a copy that another upload is sending, as that upload's own task does (its
   * creation waits for the copy to land), so the dispatcher does not send the template there a
   * second time. But not for longer, once this upload has ended, than the gateway would take to
   * send the file itself: a first client on a slow line must not hold a second one up.
   */
  private join(underWay: OnItsWay, head: PrefixHasher, signal: AbortSignal): Promise<Forwarded | undefined> {
    const { clock, logger } = this.options;
    const machine = underWay.machine;
    logger.info(
      { machine: machine.name },
      "template on its way to the machine for another task: this task waits for that copy",
    );
    return new Promise((resolve) => {
      let giveUp: Timer | undefined;
      const done = (forwarded: Forwarded | undefined) => {
        giveUp?.cancel();
        resolve(forwarded);
      };
      void underWay.landed.then((theirs) =>
        done(theirs && { ...theirs, created: false, settle: () => undefined }),
      );
      signal.addEventListener("abort", () => done(undefined), { once: true });
      const afterOwnEnd = () => {
        const ms = Math.ceil(head.total / machine.uploadBytesPerMs);
        giveUp = clock.setTimeout(() => {
          logger.info(
            { machine: machine.name, waited_ms: ms },
            "the copy on its way is slow: this task goes on without it",
          );
          done(undefined);
        }, ms);
      };
      // A file under a megabyte is known by its whole content, so it may have ended already.
      if (head.readableEnded) afterOwnEnd();
      else head.once("end", afterOwnEnd);
    });
  }

  private async send(
    machine: Machine,
    sink: PassThrough,
    abort: AbortController,
    stop: (why: string) => void,
  ): Promise<{ sha256: string; created: boolean } | undefined> {
    const { clock } = this.options;
    let stalledSince: number | undefined;
    const watch = clock.setInterval(() => {
      if (!sink.writableNeedDrain) stalledSince = undefined;
      else if (stalledSince === undefined) stalledSince = clock.now();
      else if (clock.now() - stalledSince > this.options.stallMs)
        stop("the machine takes the upload too slowly");
    }, CHECK_EVERY_MS);
    try {
      return await machine.client.postBlob(sink, abort.signal);
    } catch (err) {
      const reason = errorMessage(abort.signal.aborted ? abort.signal.reason : err);
      this.options.logger.info({ machine: machine.name, reason }, "upload not forwarded");
      return undefined;
    } finally {
      watch.cancel();
    }
  }

  /** The machine a task of unknown length would most likely go to now: the fastest with a free slot. */
  private pick(need: TaskNeed): Machine | undefined {
    let best: Machine | undefined;
    for (const m of this.options.fleet.list()) {
      // The embedded worker (pinned) reads the gateway's own blobs: there is nothing to send it.
      if (!m.placeable || m.freeSlots === 0 || m.pinned) continue;
      if (m.can === undefined || !needMet(need, m.can)) continue;
      if (!best) {
        best = m;
        continue;
      }
      const a = this.options.speeds.speed(m.name);
      const b = this.options.speeds.speed(best.name);
      if (a < b || (a === b && m.freeSlots > best.freeSlots)) best = m;
    }
    return best;
  }
}

/** Passes bytes through, counts them, and emits `prefix` with the sha256 of the first `bytes` of them (or all). */
class PrefixHasher extends Transform {
  /** Bytes passed through so far. */
  total = 0;
  private readonly hash = createHash("sha256");
  private seen = 0;
  private done = false;

  constructor(private readonly bytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    if (!this.done) {
      const take = Math.min(chunk.length, this.bytes - this.seen);
      this.hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
      this.seen += take;
      if (this.seen >= this.bytes) this.finishPrefix();
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.finishPrefix();
    callback();
  }

  private finishPrefix(): void {
    if (this.done) return;
    this.done = true;
    this.emit("prefix", this.hash.digest("hex"));
  }
}
