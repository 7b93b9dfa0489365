import { type FSWatcher, watch } from "node:fs";
import { dirname } from "node:path";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { type Clock, systemClock, type Timer } from "../clock.js";
import { ApiKeySet, type ApiKeysFile, loadApiKeysFile } from "./api-keys.js";

/**
 * The keys in force, re-read when the keys file changes, so adding or revoking a key needs no
 * restart. As with machines.json (machines-watcher.ts) the folder is watched, since `keys add`
 * and editors replace the file by rename; a bad edit is logged and the last good set stays.
 * Any change in the folder triggers a (debounced) read, not only one named like the file: a
 * Kubernetes secret is swapped through a `..data` symlink, and no event names the file itself.
 */
export class ApiKeysWatcher {
  private watcher: FSWatcher | undefined;
  private timer: Timer | undefined;
  private keys: ApiKeySet;
  private last: string;
  /** The reason the file's content was refused, logged once however many events follow. */
  private refused: string | undefined;
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
    const initial = loadApiKeysFile(file);
    this.keys = new ApiKeySet(initial);
    this.last = JSON.stringify(initial);
  }

  get current(): ApiKeySet {
    return this.keys;
  }

  start(): void {
    this.watcher = watch(dirname(this.file), () => {
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
    let file: ApiKeysFile;
    try {
      file = loadApiKeysFile(this.file);
    } catch (err) {
      const reason = errorMessage(err);
      if (reason !== this.refused) {
        this.logger.error(
          { file: this.file, reason },
          "API keys file edit rejected; the last good set of keys stays in force",
        );
      }
      this.refused = reason;
      return;
    }
    this.refused = undefined;
    const text = JSON.stringify(file);
    if (text === this.last) return;
    this.last = text;
    this.keys = new ApiKeySet(file);
    this.logger.info({ file: this.file, keys: this.keys.size }, "API keys file reloaded");
  }
}
