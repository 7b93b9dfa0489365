import { PassThrough, type Readable } from "node:stream";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Fleet, Machine } from "./fleet.js";
import type { SpeedModel } from "./speed-model.js";

export interface Forwarded {
  readonly machine: Machine;
  readonly sha256: string;
  /** The machine did not hold this content before (so a refused task should take it back). */
  readonly created: boolean;
}

/** Below this much buffered-but-unsent data the client never waits on the machine. */
const BUFFER_BYTES = 8 * 1024 * 1024;
const CHECK_EVERY_MS = 250;

/**
 * Copies a template video to the machine most likely to run its task while the client is still
 * uploading it, so a big first-time video crosses the network once in the time it takes, not
 * twice in a row (gateway, then machine). It is only a head start: if the task lands elsewhere, or
 * the machine is slow or fails, the dispatcher uploads as usual. A machine that keeps the copy
 * waiting longer than `stallMs` is dropped from it, so it can never hold a client's upload up.
 */
export class Prestager {
  constructor(
    private readonly options: { fleet: Fleet; speeds: SpeedModel; logger: Logger; stallMs: number },
  ) {}

  /** Starts forwarding `source`; undefined when no machine has a free slot to run it now. */
  forward(source: Readable): Promise<Forwarded | undefined> | undefined {
    const machine = this.pick();
    if (!machine) return undefined;
    const log = this.options.logger.child({ machine: machine.name });
    const sink = new PassThrough({ highWaterMark: BUFFER_BYTES });
    const abort = new AbortController();
    let stalledSince: number | undefined;
    const stop = (why: string) => {
      if (abort.signal.aborted) return;
      source.unpipe(sink);
      abort.abort(new Error(why));
      sink.destroy();
      // Unpiping can leave the source paused; the local copy must go on reading it.
      source.resume();
    };
    const watch = setInterval(() => {
      if (!sink.writableNeedDrain) stalledSince = undefined;
      else if (stalledSince === undefined) stalledSince = Date.now();
      else if (Date.now() - stalledSince > this.options.stallMs)
        stop("the machine takes the upload too slowly");
    }, CHECK_EVERY_MS);
    source.once("error", () => stop("the client's upload failed"));
    source.once("close", () => {
      if (!source.readableEnded) stop("the client's upload ended early");
    });
    source.pipe(sink);
    return machine.client
      .postBlob(sink, abort.signal)
      .then(
        (stored): Forwarded => ({ machine, ...stored }),
        (err: unknown) => {
          log.info(
            { reason: errorMessage(abort.signal.aborted ? abort.signal.reason : err) },
            "upload not forwarded",
          );
          return undefined;
        },
      )
      .finally(() => clearInterval(watch));
  }

  /** The machine a task of unknown length would most likely go to now: the fastest with a free slot. */
  private pick(): Machine | undefined {
    let best: Machine | undefined;
    for (const m of this.options.fleet.list()) {
      if (!m.placeable || m.freeSlots === 0) continue;
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
