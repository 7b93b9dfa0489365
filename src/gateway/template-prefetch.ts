import { BoundedMap } from "../bounded-map.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { TaskRow } from "../store/schema.js";
import type { BlobPush } from "./blob-push.js";
import type { Clock } from "./clock.js";
import type { Machine } from "./fleet.js";

/** A pending task the placement keeps for a busy slot of `machine`, in service order. */
export interface WaitingTask {
  readonly task: TaskRow;
  readonly machine: Machine;
}

export interface TemplatePrefetchOptions {
  readonly clock: Clock;
  readonly push: BlobPush;
  readonly logger: Logger;
}

/** A failed send to a machine is tried again, for another task, after this long. */
const RETRY_AFTER_MS = 30_000;
const FAILURES_KEPT = 1000;

/**
 * Sends a queued task's template to the busy machine the placement keeps it for, while that
 * machine still works on the task before it, so the slot does not stand idle for the transfer
 * once it frees (issue 14: on a 1 Gbit/s LAN a 100 MB template is most of a second, paid again by
 * each machine for each template it comes to run).
 *
 * Only the next tasks of each machine (one per slot): a plan can change with the next pass, and a
 * template sent for a task that then starts elsewhere is bytes spent for nothing. One send at a
 * time, and only while no task waits in its slot for a big upload (BlobPush.idle): every send
 * leaves through the gateway's one link, and sends that share it all end late. The embedded
 * worker reads the gateway's own blobs and gets nothing.
 */
export class TemplatePrefetch {
  /** `machine\nsha256` → until when a send that failed is not tried again (ms). */
  private readonly failed = new BoundedMap<string, number>(FAILURES_KEPT);

  constructor(private readonly o: TemplatePrefetchOptions) {}

  /** Whether a send could start now: worth a placement pass even when no slot is free. */
  get ready(): boolean {
    return this.o.push.idle;
  }

  /** Starts the send, if any, for the first of the tasks waiting for busy slots (in service order) that needs one. */
  consider(waiting: readonly WaitingTask[]): void {
    if (!this.o.push.idle) return;
    const seen = new Map<Machine, number>();
    for (const { task, machine } of waiting) {
      const nth = (seen.get(machine) ?? 0) + 1;
      seen.set(machine, nth);
      if (nth > machine.capacity || machine.pinned || !machine.placeable) continue;
      const sha256 = task.video_sha256;
      if (machine.hasBlob(sha256) || machine.uploadUnderWay(sha256)) continue;
      // A send that failed (a full disk, a machine going away) is not retried at once: the end of
      // each send wakes the next pass, which would otherwise try it again straight away.
      if ((this.failed.get(`${machine.name}\n${sha256}`) ?? 0) > this.o.clock.now()) continue;
      this.send(machine, task);
      return;
    }
  }

  private send(machine: Machine, task: TaskRow): void {
    const log = this.o.logger.child({ task_id: task.id, machine: machine.name });
    const blob = { sha256: task.video_sha256, bytes: task.video_bytes };
    const started = this.o.clock.now();
    log.info(
      { sha256: blob.sha256, bytes: blob.bytes },
      "prefetch: sending the template of a task that waits for this machine",
    );
    this.o.push.push(machine, blob).then(
      () => log.info({ ms: this.o.clock.now() - started }, "prefetch: template in place"),
      (err: unknown) => {
        this.failed.set(`${machine.name}\n${blob.sha256}`, this.o.clock.now() + RETRY_AFTER_MS);
        log.warn(
          { reason: errorMessage(err) },
          "prefetch: sending the template failed; the task sends it when it starts",
        );
      },
    );
  }
}
