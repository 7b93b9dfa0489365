import { BoundedMap } from "../bounded-map.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import { type BlobPush, isBigSend } from "./blob-push.js";
import type { Clock } from "./clock.js";
import type { Machine } from "./fleet.js";
import { type JobInputBlob, taskInputs } from "./job-request.js";

/** A pending task the placement keeps for a busy slot of `machine`, in service order. */
export interface WaitingTask {
  readonly task: TaskRow;
  readonly machine: Machine;
}

export interface InputPrefetchOptions {
  readonly clock: Clock;
  readonly push: BlobPush;
  readonly logger: Logger;
}

/** A failed send to a machine is tried again, for another task, after this long. */
const RETRY_AFTER_MS = 30_000;
const FAILURES_KEPT = 1000;

/**
 * Sends a queued task's inputs to the busy machine the placement keeps it for, while that machine
 * still works on the task before it, so the slot does not stand idle for a transfer once it frees.
 * The template: on a 1 Gbit/s LAN a 100 MB template is most of a second, paid again by each
 * machine for each template it comes to run (issue 14). The audio: every task brings its own, and
 * sent when the slot frees it was a third of the gap between two jobs (4 of 12 ms at the median,
 * measured on loopback).
 *
 * Only the next tasks of each machine (one per slot): a plan can change with the next pass, and
 * an input sent for a task that then starts elsewhere is bytes spent for nothing. Every send leaves
 * through the gateway's one link, and sends that share it all end late: a big one (a template, a
 * long WAV) goes one at a time, and only while no task waits in its slot for a big upload
 * (BlobPush.idle); a small one is a few round trips, and goes as soon as the job starting on its
 * machine has been answered. The embedded worker reads the gateway's own blobs and gets nothing.
 */
export class InputPrefetch {
  /** `machine\nsha256` → until when a send that failed is not tried again (ms). */
  private readonly failed = new BoundedMap<string, number>(FAILURES_KEPT);

  constructor(private readonly o: InputPrefetchOptions) {}

  /** Whether a big send could start now: worth a placement pass even when no slot is free. */
  get ready(): boolean {
    return this.o.push.idle;
  }

  /**
   * Starts the sends the tasks waiting for busy slots (in service order) need: each small input
   * missing on its machine, and the first big one, if the link is free for it.
   */
  consider(waiting: readonly WaitingTask[]): void {
    let bigAllowed = this.o.push.idle;
    const seen = new Map<Machine, number>();
    for (const { task, machine } of waiting) {
      const nth = (seen.get(machine) ?? 0) + 1;
      seen.set(machine, nth);
      if (nth > machine.capacity || machine.pinned || !machine.placeable) continue;
      // A text task has no audio yet, and its voice's recording goes with its job.
      for (const input of taskInputs(task)) {
        if (!missing(machine, input)) continue;
        // A send that failed (a full disk, a machine going away) is not retried at once: the end of
        // each send wakes the next pass, which would otherwise try it again straight away.
        if ((this.failed.get(`${machine.name}\n${input.sha256}`) ?? 0) > this.o.clock.now()) continue;
        if (isBigSend(input.bytes)) {
          if (!bigAllowed) continue;
          bigAllowed = false;
          this.send(machine, task, input);
        } else {
          // After the job starting there now is accepted: sent beside its PUT, the worker would
          // write both at once, and the job would start later (measured: its record's write took
          // 2.7 ms instead of 1). The task it is for waits for a slot anyway.
          void machine.startsSettled().then(() => {
            // Meanwhile the machine may have stopped taking work, or come to hold the input.
            if (machine.placeable && missing(machine, input)) this.send(machine, task, input);
          });
        }
      }
    }
  }

  private send(machine: Machine, task: TaskRow, input: JobInputBlob): void {
    const log = this.o.logger.child({ task_id: task.id, machine: machine.name });
    const blob = { sha256: input.sha256, bytes: input.bytes };
    const started = this.o.clock.now();
    const what = input.field === "video" ? "template" : "audio";
    // A template is an event worth a line; an audio goes with every task.
    const level = input.field === "video" ? "info" : "debug";
    log[level](
      { sha256: blob.sha256, bytes: blob.bytes },
      `prefetch: sending the ${what} of a task that waits for this machine`,
    );
    // A task's own audio came with it, so a machine is unlikely to hold it: not asked about first
    // (as the dispatcher sends it when the task starts).
    this.o.push.push(machine, blob, input.field === "video").then(
      () => log[level]({ ms: this.o.clock.now() - started }, `prefetch: ${what} in place`),
      (err: unknown) => {
        this.failed.set(`${machine.name}\n${blob.sha256}`, this.o.clock.now() + RETRY_AFTER_MS);
        log.warn(
          { reason: errorMessage(err) },
          `prefetch: sending the ${what} failed; the task sends it when it starts`,
        );
      },
    );
  }
}

/** Neither held by the machine nor on its way there. */
function missing(machine: Machine, input: JobInputBlob): boolean {
  return !machine.hasBlob(input.sha256) && !machine.uploadUnderWay(input.sha256);
}
