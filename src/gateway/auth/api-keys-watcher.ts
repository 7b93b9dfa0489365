import { type FSWatcher, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { type Clock, systemClock, type Timer } from "../clock.js";
import { ApiKeySet, loadApiKeysFile } from "./api-keys.js";

/**
 * The keys in force, re-read when the keys file changes, so adding or revoking a key needs no
 * restart. As with machines.json (machines-watcher.ts) the folder is watched, since `keys add`
 * and editors replace the file by rename; a bad edit is logged and the last good set stays.
 */
export class ApiKeysWatcher {
  private watcher: FSWatcher | undefined;
  private timer: Timer | undefined;
  private keys: ApiKeySet;
  private readonly clock: Clock;
  private readonly debounceMs: number;

  constructor(
    readonly file: string,
    private readonly logger: Logger,
    options: { clock?: Clock; debounceMs?: number } = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.debounceMs = options.debounceMs ?? 150;
    // At start-up a bad file is the operator's to fix before anything listens: it throws.
    this.keys = new ApiKeySet(loadApiKeysFile(file));
  }

  get current(): ApiKeySet {
    return this.keys;
  }

  start(): void {
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), (_event, changed) => {
      if (changed !== null && changed !== name) return;
      this.timer?.cancel();
      this.timer = this.clock.setTimeout(() => this.reload(), this.debounceMs);
    });
    this.watcher.on("error", (err) =>
      this.logger.error({ err, file: this.file }, "cannot watch the API keys file"),
    );
  }

  close(): void {
    this.timer?.cancel();
    this.watcher?.close();
  }

  reload(): void {
    try {
      this.keys = new ApiKeySet(loadApiKeysFile(this.file));
    } catch (err) {
      this.logger.error(
        { file: this.file, reason: errorMessage(err) },
        "API keys file edit rejected; the last good set of keys stays in force",
      );
      return;
    }
    this.logger.info({ file: this.file, keys: this.keys.size }, "API keys file reloaded");
  }
}
