import { BoundedMap } from "../bounded-map.js";
import type { MachineEntry } from "../config/machines-file.js";
import type { Health } from "../protocol/schemas.js";
import type { WorkerClient } from "../protocol/worker-client.js";

/** What `GET /machines` says a machine is doing. `unknown` lasts until the first probe answers. */
export type MachineState = "unknown" | "up" | "down" | "draining" | "disabled";

export interface RunningAttempt {
  readonly taskId: string;
  readonly audioDuration: number;
  readonly startedAt: number;
}

const BLOB_MEMORY = 10_000;
/** 50 MB/s until an upload has been timed: a LAN to a GPU box. */
const DEFAULT_UPLOAD_BYTES_PER_MS = 50_000;

/** One worker agent as the gateway sees it: its configuration, health, and the attempts it holds. */
export class Machine {
  spec: MachineEntry;
  client: WorkerClient;
  /** Set by the operator (POST /machines/{name}/drain); kept in the store. */
  draining = false;
  /** Gone from machines.json: finishes what it runs, then leaves the fleet. */
  removed = false;
  /** Kept out of machines.json reloads (the embedded worker). */
  readonly pinned: boolean;
  health: "unknown" | "up" | "down" = "unknown";
  consecutiveFailures = 0;
  /** Start of the current outage (first failed contact since the last success). */
  unreachableSince: number | undefined;
  /** The running attempts were already handed on for this outage. */
  lostHandled = false;
  nextProbeAt = 0;
  probing = false;
  lastError: string | undefined;
  lastSeen: Date | undefined;
  info: Health | undefined;
  readonly running = new Map<string, RunningAttempt>();
  uploadBytesPerMs = DEFAULT_UPLOAD_BYTES_PER_MS;
  /** Blobs the worker is believed to hold: the BLOB_MEMORY it was most recently known to have. */
  private readonly blobs = new BoundedMap<string, true>(BLOB_MEMORY);
  private readonly uploads = new Map<string, Promise<void>>();

  constructor(spec: MachineEntry, makeClient: (spec: MachineEntry) => WorkerClient, pinned = false) {
    this.spec = spec;
    this.client = makeClient(spec);
    this.pinned = pinned;
  }

  get name(): string {
    return this.spec.name;
  }

  get state(): MachineState {
    if (!this.spec.enabled || this.removed) return "disabled";
    if (this.draining) return "draining";
    return this.health;
  }

  /** Healthy, enabled and not draining: may be given new work. */
  get placeable(): boolean {
    return this.state === "up";
  }

  get freeSlots(): number {
    return Math.max(0, this.spec.max_concurrent - this.running.size);
  }

  hasBlob(sha256: string): boolean {
    return this.blobs.has(sha256);
  }

  knowBlob(sha256: string): void {
    this.blobs.set(sha256, true);
  }

  /**
   * Runs `upload` unless an upload of the same blob to this machine is already under way, in which
   * case it waits for that one. Either way the machine is then believed to hold the blob.
   */
  async uploadOnce(sha256: string, upload: () => Promise<void>): Promise<void> {
    let pending = this.uploads.get(sha256);
    if (!pending) {
      pending = upload().finally(() => this.uploads.delete(sha256));
      this.uploads.set(sha256, pending);
    }
    await pending;
    this.knowBlob(sha256);
  }

  forgetBlobs(): void {
    this.blobs.clear();
  }

  observeUpload(bytes: number, ms: number): void {
    // Tiny uploads are all latency; they say nothing about bandwidth.
    if (bytes < 1_000_000 || ms <= 0) return;
    this.uploadBytesPerMs += 0.3 * (bytes / ms - this.uploadBytesPerMs);
  }
}
