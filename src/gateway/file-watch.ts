import { type FSWatcher, type Stats, stat, watch } from "node:fs";
import { basename, dirname } from "node:path";
import type { Logger } from "../logger.js";
import { type Clock, systemClock, type Timer } from "./clock.js";

export interface FileWatchOptions {
  clock?: Clock | undefined;
  /** Edits arrive as bursts of events (truncate, write, rename); wait for the burst to end. */
  debounceMs?: number | undefined;
  /**
   * React to any change in the folder, not only to one that names the file: a Kubernetes secret
   * is swapped through a `..data` symlink, and no event names the file itself.
   */
  anyNameInFolder?: boolean | undefined;
  /**
   * How often the file's size, times and inode are also compared: a shared folder (NFS, a shared
   * volume) reports no change made on another host to this host's watch, and several gateways
   * read one machines file there (issue 13). 0: never.
   */
  pollMs?: number | undefined;
}

/** What tells one version of the file from the next without reading it. */
function signature(s: Stats): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

/**
 * Calls `onEdit` once after each burst of changes to a settings file (machines.json, the API keys
 * file). The folder is watched, not the file: editors, config tools and `keys add` replace the
 * file by rename, which a watch on the file itself would lose after the first edit.
 */
export class FileWatch {
  private watcher: FSWatcher | undefined;
  private timer: Timer | undefined;
  private poll: Timer | undefined;
  private seen: string | undefined;
  private readonly clock: Clock;
  private readonly debounceMs: number;

  constructor(
    private readonly file: string,
    private readonly onEdit: () => void,
    private readonly logger: Logger,
    private readonly options: FileWatchOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.debounceMs = options.debounceMs ?? 150;
  }

  start(): void {
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), (_event, changed) => {
      if (!this.options.anyNameInFolder && changed !== null && changed !== name) return;
      this.edited();
    });
    this.watcher.on("error", (err) => this.logger.error({ err, file: this.file }, "cannot watch the file"));
    const pollMs = this.options.pollMs ?? 5000;
    if (pollMs > 0) {
      this.look(() => undefined);
      this.poll = this.clock.setInterval(() => this.look(() => this.edited()), pollMs);
    }
  }

  close(): void {
    this.timer?.cancel();
    this.poll?.cancel();
    this.watcher?.close();
  }

  private edited(): void {
    this.timer?.cancel();
    this.timer = this.clock.setTimeout(this.onEdit, this.debounceMs);
  }

  /** Calls `changed` when the file differs from the last look (a file gone counts as a change). */
  private look(changed: () => void): void {
    stat(this.file, (err, s) => {
      const now = err ? "gone" : signature(s);
      if (this.seen !== undefined && now !== this.seen) changed();
      this.seen = now;
    });
  }
}
