import { BoundedMap } from "../bounded-map.js";
import type { MachineEntry } from "../config/machines-file.js";
import type { Health } from "../protocol/schemas.js";
import type { WorkerClient } from "../protocol/worker-client.js";
import type { TaskNeed } from "../store/task-speech.js";

/** What `GET /machines` says a machine is doing. `unknown` lasts until the first probe answers. */
export type MachineState = "unknown" | "up" | "down" | "draining" | "disabled";
export type MachineHealth = "unknown" | "up" | "down";
export type MachineCapabilities = NonNullable<Health["capabilities"]>;

export interface RunningAttempt {
  readonly taskId: string;
  readonly audioDuration: number;
  readonly startedAt: number;
}

const BLOB_MEMORY = 10_000;
/** 50 MB/s until an upload has been timed: a LAN to a GPU box. */
const DEFAULT_UPLOAD_BYTES_PER_MS = 50_000;

/**
 * One worker agent as the gateway sees it: its configuration, health, and the attempts it holds.
 * Everything here changes only through the methods below, named for what happened; in particular
 * a slot is taken only by `tryClaim` (or `adopt` after a restart) and given back only by
 * `release`, so `max_concurrent` is enforced in this one place (design.md, "Scheduling").
 */
export class Machine {
  /** Kept out of machines.json reloads (the embedded worker). */
  readonly pinned: boolean;
  readonly #makeClient: (spec: MachineEntry) => WorkerClient;
  #spec: MachineEntry;
  #client: WorkerClient;
  #draining = false;
  /** The agent said it is stopping (health `draining`, or a job refused with WORKER_DRAINING). */
  #agentDraining = false;
  #removed = false;
  #health: MachineHealth = "unknown";
  #consecutiveFailures = 0;
  #unreachableSince: number | undefined;
  /** The running attempts were already handed on for this outage. */
  #lostHandled = false;
  #nextProbeAt = 0;
  #probing = false;
  #lastError: string | undefined;
  #lastSeen: Date | undefined;
  #info: Health | undefined;
  readonly #running = new Map<string, RunningAttempt>();
  #uploadBytesPerMs = DEFAULT_UPLOAD_BYTES_PER_MS;
  /** Blobs the worker is believed to hold: the BLOB_MEMORY it was most recently known to have. */
  readonly #blobs = new BoundedMap<string, true>(BLOB_MEMORY);
  readonly #uploads = new Map<string, Promise<void>>();
  /** Jobs being started on it (inputs and job request under way): see `starting`. */
  readonly #starting = new Set<Promise<unknown>>();

  constructor(spec: MachineEntry, makeClient: (spec: MachineEntry) => WorkerClient, pinned = false) {
    this.#spec = spec;
    this.#makeClient = makeClient;
    this.#client = makeClient(spec);
    this.pinned = pinned;
  }

  get name(): string {
    return this.#spec.name;
  }

  get spec(): MachineEntry {
    return this.#spec;
  }

  /** The address new work goes to; attempts already running keep the client they started with. */
  get client(): WorkerClient {
    return this.#client;
  }

  /** Set by the operator (POST /machines/{name}/drain); kept in the store. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Its agent is stopping: like an operator's drain, until a probe finds it ready again. */
  get agentDraining(): boolean {
    return this.#agentDraining;
  }

  /** Gone from machines.json: finishes what it runs, then leaves the fleet. */
  get removed(): boolean {
    return this.#removed;
  }

  get health(): MachineHealth {
    return this.#health;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }

  /** A health probe of it is under way. */
  get probing(): boolean {
    return this.#probing;
  }

  /** Start of the current outage (first failed contact since the last success). */
  get unreachableSince(): number | undefined {
    return this.#unreachableSince;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  get lastSeen(): Date | undefined {
    return this.#lastSeen;
  }

  /** The worker's last health answer. */
  get info(): Health | undefined {
    return this.#info;
  }

  /**
   * What the machine can do (issue 12), from its last health answer: undefined until it answered
   * once. An agent older than the field lip-syncs only.
   */
  get capabilities(): MachineCapabilities | undefined {
    if (!this.#info) return undefined;
    return this.#info.capabilities ?? { lipsync: this.#info.engine, tts: false, voice_clone: false };
  }

  /** The most a task may need of it (task-speech.ts); undefined until it answered once. */
  get can(): TaskNeed | undefined {
    const capabilities = this.capabilities;
    if (!capabilities) return undefined;
    if (capabilities.voice_clone) return "voice_clone";
    return capabilities.tts ? "tts" : "lipsync";
  }

  get uploadBytesPerMs(): number {
    return this.#uploadBytesPerMs;
  }

  get state(): MachineState {
    if (!this.#spec.enabled || this.#removed) return "disabled";
    if (this.#draining) return "draining";
    // A stopping agent that has gone is down: the outage, not the drain, is what matters then.
    if (this.#agentDraining && this.#health !== "down") return "draining";
    return this.#health;
  }

  /** Healthy, enabled and not draining: may be given new work. */
  get placeable(): boolean {
    return this.state === "up";
  }

  /** Attempts holding a slot, by attempt id (which is also the job id on the worker). */
  get running(): ReadonlyMap<string, RunningAttempt> {
    return this.#running;
  }

  /**
   * Slots new work may use: `max_concurrent` from machines.json, or fewer when the agent reports
   * fewer (a worker started with `--max-concurrent 1` listed as 2 would queue the second job on
   * the GPU box while the fleet counts it as running; issue 10).
   */
  get capacity(): number {
    const reported = this.#info?.max_concurrent;
    return reported !== undefined ? Math.min(this.#spec.max_concurrent, reported) : this.#spec.max_concurrent;
  }

  /** What an operator should know about this machine's configuration, in words. */
  get warnings(): string[] {
    const reported = this.#info?.max_concurrent;
    if (reported === undefined || reported >= this.#spec.max_concurrent) return [];
    return [
      `the agent runs ${reported} job${reported === 1 ? "" : "s"} at once but machines.json says ` +
        `max_concurrent ${this.#spec.max_concurrent}: running at ${reported}`,
    ];
  }

  /**
   * Jobs the worker reports it still spends a slot on although they are over (`held` in
   * /v1/health): a cancelled HeyGem job's render goes on in the container until it ends.
   */
  get held(): readonly string[] {
    return this.#info?.held ?? [];
  }

  /** Slots taken: the attempts the gateway follows, and the slots the worker says are still held. */
  get busySlots(): number {
    let busy = this.#running.size;
    for (const id of this.held) if (!this.#running.has(id)) busy++;
    return busy;
  }

  get freeSlots(): number {
    return Math.max(0, this.capacity - this.busySlots);
  }

  // ---- slots ------------------------------------------------------------------------------------

  /**
   * Takes a slot for a new attempt, unless every slot is taken (held ones included). After
   * `max_concurrent` was lowered the machine may hold more attempts than slots until some end; no
   * claim succeeds meanwhile.
   */
  tryClaim(attemptId: string, attempt: RunningAttempt): boolean {
    if (this.#running.has(attemptId) || this.busySlots >= this.capacity) return false;
    this.#running.set(attemptId, attempt);
    return true;
  }

  /**
   * Counts an attempt that already runs on the worker (found in the store after a restart). It is
   * taken whatever the free slots: refusing it would not stop the job, only hide it from the count.
   */
  adopt(attemptId: string, attempt: RunningAttempt): void {
    this.#running.set(attemptId, attempt);
  }

  /** Gives the attempt's slot back; false when it held none (already released). */
  release(attemptId: string): boolean {
    return this.#running.delete(attemptId);
  }

  // ---- operator and configuration ---------------------------------------------------------------

  setDraining(draining: boolean): void {
    this.#draining = draining;
  }

  /** The agent refused a job as draining: no new work until a probe says it is ready. */
  agentStopping(): void {
    this.#agentDraining = true;
  }

  /**
   * The machine is listed in machines.json (still, or again) with `entry`. A new address is a
   * different worker as far as the gateway knows: a new client, no blobs believed held, health
   * unknown and a probe due at once. Returns whether the entry differs from the one in force.
   */
  reconfigure(entry: MachineEntry): boolean {
    const before = this.#spec;
    this.#removed = false;
    if (before.host !== entry.host || before.port !== entry.port) {
      this.#client = this.#makeClient(entry);
      this.#blobs.clear();
      this.#health = "unknown";
      this.#nextProbeAt = 0;
    }
    if (JSON.stringify(before) === JSON.stringify(entry)) return false;
    this.#spec = entry;
    return true;
  }

  /** Gone from machines.json: takes no new work, and leaves once `running` is empty. */
  remove(): void {
    this.#removed = true;
  }

  // ---- health -----------------------------------------------------------------------------------

  /** Whether the fleet's timer should probe it now. Disabled machines are probed only while busy. */
  probeDue(now: number): boolean {
    return !this.#probing && now >= this.#nextProbeAt && (this.#spec.enabled || this.#running.size > 0);
  }

  /** Marks a probe under way; false when one already is (a machine is probed once at a time). */
  beginProbe(): boolean {
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  endProbe(): void {
    this.#probing = false;
  }

  probeAgainAt(at: number): void {
    this.#nextProbeAt = at;
  }

  /** The worker answered its health probe: the outage, if any, is over. */
  probeSucceeded(health: Health, at: number): void {
    this.#info = health;
    this.#agentDraining = health.state === "draining";
    this.#lastSeen = new Date(at);
    this.#consecutiveFailures = 0;
    this.#unreachableSince = undefined;
    this.#lostHandled = false;
  }

  /** A probe started at `startedAt` failed. Returns the failures in a row, this one included. */
  probeFailed(reason: string, startedAt: number): number {
    this.#consecutiveFailures++;
    this.#unreachableSince ??= startedAt;
    this.#lastError = reason;
    return this.#consecutiveFailures;
  }

  /**
   * Something other than a probe found the machine unreachable: count the outage from `now` if
   * none is running, and at least `threshold` failures, so the circuit opens at once.
   */
  openCircuit(now: number, threshold: number): void {
    this.#unreachableSince ??= now;
    this.#consecutiveFailures = Math.max(this.#consecutiveFailures, threshold);
  }

  /** Returns whether the health changed; `error`, when given, is kept as the last error either way. */
  setHealth(health: "up" | "down", error: string | undefined): boolean {
    if (error !== undefined) this.#lastError = error;
    if (this.#health === health) return false;
    this.#health = health;
    return true;
  }

  /**
   * True once per outage: when the machine has been unreachable for `graceMs` while holding
   * attempts, which must then move on. A probe that succeeds ends the outage.
   */
  declareLost(now: number, graceMs: number): boolean {
    const since = this.#unreachableSince;
    if (since === undefined || this.#lostHandled || this.#running.size === 0 || now - since < graceMs)
      return false;
    this.#lostHandled = true;
    return true;
  }

  // ---- blobs ------------------------------------------------------------------------------------

  hasBlob(sha256: string): boolean {
    return this.#blobs.has(sha256);
  }

  knowBlob(sha256: string): void {
    this.#blobs.set(sha256, true);
  }

  /**
   * Runs `upload` unless an upload of the same blob to this machine is already under way, in which
   * case it waits for that one. Either way the machine is then believed to hold the blob.
   */
  async uploadOnce(sha256: string, upload: () => Promise<void>): Promise<void> {
    let pending = this.#uploads.get(sha256);
    if (!pending) {
      pending = upload().finally(() => this.#uploads.delete(sha256));
      this.#uploads.set(sha256, pending);
    }
    await pending;
    this.knowBlob(sha256);
  }

  /** The upload of this blob to this machine under way, if any (a prefetch, say). */
  uploadUnderWay(sha256: string): Promise<void> | undefined {
    return this.#uploads.get(sha256);
  }

  // ---- starts ----------------------------------------------------------------------------------

  /**
   * Runs the start of a job here (its inputs' uploads and its request), so that `startsSettled`
   * can put fetching a finished job's result after it: the GPU is the scarce resource, and on the
   * worker the download competes with the next job's acceptance (its record's fsync above all).
   */
  starting<T>(start: () => Promise<T>): Promise<T> {
    const run = start();
    const tracked = run.then(
      () => undefined,
      () => undefined,
    );
    this.#starting.add(tracked);
    void tracked.then(() => this.#starting.delete(tracked));
    return run;
  }

  /** Resolves once the starts under way here now have been answered (or failed). */
  async startsSettled(): Promise<void> {
    await Promise.all([...this.#starting]);
  }

  observeUpload(bytes: number, ms: number): void {
    // Tiny uploads are all latency; they say nothing about bandwidth.
    if (bytes < 1_000_000 || ms <= 0) return;
    this.#uploadBytesPerMs += 0.3 * (bytes / ms - this.#uploadBytesPerMs);
  }
}
