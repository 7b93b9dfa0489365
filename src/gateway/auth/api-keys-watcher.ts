import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { Clock } from "../clock.js";
import { FileWatch } from "../file-watch.js";
import { ApiKeySet, type ApiKeysFile, loadApiKeysFile } from "./api-keys.js";

/**
 * The keys in force, re-read when the keys file changes, so adding or revoking a key needs no
 * restart. As with machines.json (machines-watcher.ts) the folder is watched, since `keys add`
 * and editors replace the file by rename; a bad edit is logged and the last good set stays.
 * Any change in the folder triggers a (debounced) read, not only one named like the file: a
 * Kubernetes secret is swapped through a `..data` symlink, and no event names the file itself.
 */
export class ApiKeysWatcher {
  private readonly watch: FileWatch;
  private keys: ApiKeySet;
  private last: string;
  /** The reason the file's content was refused, logged once however many events follow. */
  private refused: string | undefined;

  constructor(
    readonly file: string,
    private readonly logger: Logger,
    options: { clock?: Clock; debounceMs?: number } = {},
  ) {
    this.watch = new FileWatch(file, () => this.reload(), logger, { ...options, anyNameInFolder: true });
    // At start-up a bad file is the operator's to fix before anything listens: it throws.
    const initial = loadApiKeysFile(file);
    this.keys = new ApiKeySet(initial);
    this.last = JSON.stringify(initial);
  }

  get current(): ApiKeySet {
    return this.keys;
  }

  start(): void {
    this.watch.start();
  }

  close(): void {
    this.watch.close();
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
