import { loadMachinesFile, type MachinesFile } from "../config/machines-file.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import { type Clock, systemClock } from "./clock.js";
import { FileWatch } from "./file-watch.js";

/**
 * Watches machines.json and hands every valid new version to `apply`. The folder is watched, not
 * the file: editors and config tools replace the file by rename, which a watch on the file itself
 * would lose. A bad edit is logged with its reason and the last good configuration stays in force.
 */
export class MachinesWatcher {
  private readonly watch: FileWatch;
  private last: string;
  private readonly clock: Clock;
  /** What `GET /machines` tells operators about the file: when it was last taken, and why not. */
  readonly status: { file: string; loaded_at: string; rejected_at: string | null; error: string | null };

  constructor(
    private readonly file: string,
    initial: MachinesFile,
    private readonly apply: (config: MachinesFile) => void,
    private readonly logger: Logger,
    options: {
      clock?: Clock;
      /** Edits arrive as bursts of events (truncate, write, rename); wait for the burst to end. */
      debounceMs?: number;
    } = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.watch = new FileWatch(file, () => this.reload(), logger, options);
    this.last = JSON.stringify(initial);
    this.status = { file, loaded_at: this.stamp(), rejected_at: null, error: null };
  }

  start(): void {
    this.watch.start();
  }

  close(): void {
    this.watch.close();
  }

  reload(): void {
    let config: MachinesFile;
    try {
      config = loadMachinesFile(this.file);
    } catch (err) {
      this.status.rejected_at = this.stamp();
      this.status.error = errorMessage(err);
      this.logger.error(
        { file: this.file, reason: errorMessage(err) },
        "machines file edit rejected; the last good configuration stays in force",
      );
      return;
    }
    this.status.error = null;
    this.status.rejected_at = null;
    const text = JSON.stringify(config);
    if (text === this.last) return;
    this.status.loaded_at = this.stamp();
    this.last = text;
    this.logger.info({ file: this.file, machines: config.machines.length }, "machines file reloaded");
    if (config.machines.length === 0)
      this.logger.warn(
        { file: this.file },
        "the machines file lists no machines: tasks wait until one is added",
      );
    this.apply(config);
  }

  private stamp(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
