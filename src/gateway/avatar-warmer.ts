import type { BlobInfo } from "../blobs/blob-store.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { BlobPush } from "./blob-push.js";
import type { Clock } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";

export interface AvatarWarmerOptions {
  readonly clock: Clock;
  readonly fleet: Fleet;
  readonly push: BlobPush;
  readonly logger: Logger;
}

/** Where the video is, as a warm found it. */
export interface Warming {
  /** Up machines that lack it: it is being sent to each. */
  readonly sending: string[];
  /** Up machines that hold it (the embedded worker reads the gateway's own blobs). */
  readonly holding: string[];
}

/**
 * Sends an avatar's video ahead to every up machine that lacks it (issue 12, `POST
 * /avatars/{id}/warm`), so the first task there does not wait for it (blob-push.ts: a warm and a
 * task needing the video at the same moment send it once). A failure is logged and nothing more:
 * the dispatcher sends the video when a task needs it, as without a warm.
 */
export class AvatarWarmer {
  constructor(private readonly o: AvatarWarmerOptions) {}

  /** Asks every up machine whether it holds `blob`, then sends it in the background to those that do not. */
  async warm(blob: BlobInfo, context: { avatar_id: string }): Promise<Warming> {
    const log = this.o.logger.child(context);
    const sending: string[] = [];
    const holding: string[] = [];
    const machines = this.o.fleet.list().filter((m) => m.state === "up");
    await Promise.all(
      machines.map(async (machine) => {
        if (machine.pinned) {
          holding.push(machine.name);
          return;
        }
        let held: boolean;
        try {
          held = await this.o.push.holds(machine, blob.sha256);
        } catch (err) {
          log.warn(
            { machine: machine.name, reason: errorMessage(err) },
            "warm: machine did not answer; skipped",
          );
          return;
        }
        if (held) {
          holding.push(machine.name);
          return;
        }
        sending.push(machine.name);
        void this.send(machine, blob, log);
      }),
    );
    sending.sort();
    holding.sort();
    log.info({ sha256: blob.sha256, sending, holding }, "warming avatar");
    return { sending, holding };
  }

  /** Names of the machines believed to hold `sha256` now. */
  holders(sha256: string): string[] {
    return this.o.fleet
      .list()
      .filter((m) => m.pinned || m.hasBlob(sha256))
      .map((m) => m.name)
      .sort();
  }

  private async send(machine: Machine, blob: BlobInfo, log: Logger): Promise<void> {
    const started = this.o.clock.now();
    try {
      await this.o.push.push(machine, blob);
      log.info(
        { machine: machine.name, bytes: blob.bytes, ms: this.o.clock.now() - started },
        "warm: avatar sent",
      );
    } catch (err) {
      log.warn(
        { machine: machine.name, reason: errorMessage(err) },
        "warm: sending the avatar failed; a task that needs it there sends it then",
      );
    }
  }
}
