import type { BlobInfo, BlobStore } from "../blobs/blob-store.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Clock } from "./clock.js";
import type { Fleet, Machine } from "./fleet.js";

export interface AvatarWarmerOptions {
  readonly clock: Clock;
  readonly fleet: Fleet;
  readonly blobs: BlobStore;
  readonly logger: Logger;
  /** How long a machine may take to say whether it holds the video (HEAD /v1/blobs). */
  readonly askTimeoutMs: number;
}

/** Where the video is, as a warm found it. */
export interface Warming {
  /** Up machines that lack it: it is being sent to each. */
  readonly sending: string[];
  /** Up machines that hold it (the embedded worker reads the gateway's own blobs). */
  readonly holding: string[];
}

/** A send is given this long plus a minute per 60 MB: a template over a slow LAN, not a stall. */
const MIN_BYTES_PER_MS = 1000;

/**
 * Sends an avatar's video ahead to every up machine that lacks it (issue 12, `POST
 * /avatars/{id}/warm`), so the first task there does not wait for it. It goes through the same
 * `Machine.uploadOnce` as the dispatcher's upload on BLOB_MISSING, so a warm and a task needing
 * the video at the same moment send it once. A failure is logged and nothing more: the
 * dispatcher sends the video when a task needs it, as without a warm.
 */
export class AvatarWarmer {
  private readonly sends = new Set<Promise<void>>();
  private readonly stop = new AbortController();

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
          held = await machine.client.hasBlob(blob.sha256, this.signal(this.o.askTimeoutMs));
        } catch (err) {
          log.warn(
            { machine: machine.name, reason: errorMessage(err) },
            "warm: machine did not answer; skipped",
          );
          return;
        }
        if (held) {
          machine.knowBlob(blob.sha256);
          holding.push(machine.name);
          return;
        }
        sending.push(machine.name);
        this.track(this.send(machine, blob, log));
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

  /** Stops the sends under way and waits for them to end. */
  async close(): Promise<void> {
    this.stop.abort(new Error("the gateway is closing"));
    await Promise.all([...this.sends]);
  }

  private async send(machine: Machine, blob: BlobInfo, log: Logger): Promise<void> {
    const started = this.o.clock.now();
    try {
      const signal = this.signal(this.o.askTimeoutMs + blob.bytes / MIN_BYTES_PER_MS);
      await machine.uploadOnce(blob.sha256, async () => {
        // Since asked, a task's upload may have brought it.
        if (await machine.client.hasBlob(blob.sha256, signal)) return;
        await machine.client.putBlob(blob.sha256, this.o.blobs.path(blob.sha256), blob.bytes, signal);
      });
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

  private track(send: Promise<void>): void {
    this.sends.add(send);
    void send.finally(() => this.sends.delete(send));
  }

  private signal(ms: number): AbortSignal {
    return AbortSignal.any([this.stop.signal, this.o.clock.timeoutSignal(Math.ceil(ms))]);
  }
}
