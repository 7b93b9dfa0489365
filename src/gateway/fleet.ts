import type { MachineEntry } from "../config/machines-file.js";
import { errorMessage } from "../errors.js";
import { linkSignals } from "../linked-signal.js";
import type { Logger } from "../logger.js";
import { WorkerClient, WorkerHttpError, WorkerUnreachableError } from "../protocol/worker-client.js";
import type { Clock, Timer } from "./clock.js";
import { Machine } from "./machine.js";

export { Machine, type MachineState } from "./machine.js";

export interface FleetOptions {
  clock: Clock;
  token: string | undefined;
  healthIntervalMs: number;
  /** Bound on one health probe; a host that does not answer within it counts as a failure. */
  probeTimeoutMs: number;
  requestTimeoutMs: number;
  /** Consecutive failures that open a machine's circuit: no new work, probes back off. */
  failureThreshold: number;
  /** How long an unreachable machine keeps its running attempts before they move on. */
  graceMs: number;
  logger: Logger;
  /** A machine may now take work (or may no longer): the scheduler should look again. */
  onChange: () => void;
  /** A machine has been unreachable past the grace period while holding attempts. */
  onLost: (machine: Machine) => void;
  /**
   * Attempt ids the gateway still follows on `machine`; any other job there is stale. Undefined
   * while this gateway does not dispatch (another gateway on the store does, issue 13): it follows
   * no job, so it can tell none stale, and fences nothing.
   */
  liveJobs: (machine: Machine) => ReadonlySet<string> | ReadonlyMap<string, unknown> | undefined;
}

const MAX_PROBE_BACKOFF_MS = 8_000;

/**
 * The machines of machines.json (and the embedded worker), their health and their circuit
 * breakers. Probes run on one timer; each machine is probed at most once at a time, and a machine
 * whose circuit is open and that does not answer at all is probed with exponential backoff (capped,
 * so a machine that comes back gets work again within seconds and without a restart).
 */
export class Fleet {
  private readonly machines = new Map<string, Machine>();
  private timer: Timer | undefined;
  private readonly abort = new AbortController();
  /** The probe under way per machine, so that `refresh` can wait for a fresh answer. */
  private readonly probes = new Map<Machine, Promise<void>>();

  constructor(private readonly options: FleetOptions) {}

  add(spec: MachineEntry, pinned = false): Machine {
    const machine = new Machine(spec, (s) => this.client(s), pinned);
    this.machines.set(spec.name, machine);
    return machine;
  }

  get(name: string): Machine | undefined {
    return this.machines.get(name);
  }

  list(): Machine[] {
    return [...this.machines.values()];
  }

  /** How many machines take new work (up, enabled, not draining) of all in the fleet. */
  availability(): { up: number; total: number } {
    let up = 0;
    for (const machine of this.machines.values()) if (machine.placeable) up++;
    return { up, total: this.machines.size };
  }

  /**
   * Brings the fleet in line with a (re)loaded machines file. New machines join; changed ones take
   * their new settings at once (attempts already running keep talking to the address they started
   * on); removed ones take no new work and leave once their running attempts end.
   */
  apply(entries: readonly MachineEntry[]): void {
    const log = this.options.logger;
    const wanted = new Map(entries.map((e) => [e.name, e]));
    for (const entry of entries) {
      const machine = this.machines.get(entry.name);
      if (!machine || machine.pinned) {
        if (!machine) {
          this.add(entry);
          log.info({ machine: entry.name, host: entry.host, port: entry.port }, "machine added");
        }
        continue;
      }
      const before = machine.spec;
      if (machine.reconfigure(entry)) {
        log.info({ machine: entry.name, before, after: entry }, "machine changed");
      }
    }
    for (const machine of this.machines.values()) {
      if (machine.pinned || wanted.has(machine.name) || machine.removed) continue;
      machine.remove();
      log.info(
        { machine: machine.name, running: machine.running.size },
        "machine removed; it takes no new work",
      );
    }
    this.sweepRemoved();
    this.options.onChange();
  }

  start(): void {
    this.tick();
    this.timer = this.options.clock.setInterval(() => this.tick(), this.options.healthIntervalMs);
  }

  /** Probes every machine now, whatever its backoff (start-up, tests). */
  async probeAll(): Promise<void> {
    await Promise.all(this.list().map((m) => this.probe(m)));
  }

  /** A dispatcher could not reach the machine: open its circuit until a probe says otherwise. */
  reportUnreachable(machine: Machine, reason: string): void {
    machine.openCircuit(this.options.clock.now(), this.options.failureThreshold);
    this.setHealth(machine, "down", reason);
  }

  /** A dispatcher's job was refused with WORKER_DRAINING: the agent is stopping. */
  reportAgentDraining(machine: Machine): void {
    if (machine.agentDraining) return;
    machine.agentStopping();
    this.agentDraining(machine);
  }

  close(): void {
    this.timer?.cancel();
    this.abort.abort();
  }

  private tick(): void {
    const now = this.options.clock.now();
    for (const machine of this.machines.values()) {
      if (machine.probeDue(now)) void this.probe(machine);
      if (machine.declareLost(now, this.options.graceMs)) {
        this.options.logger.warn(
          {
            machine: machine.name,
            running: machine.running.size,
            unreachable_ms: now - (machine.unreachableSince ?? now),
          },
          "machine unreachable past the grace period; its running tasks move on",
        );
        this.options.onLost(machine);
      }
    }
    this.sweepRemoved();
  }

  /**
   * Resolves once the machine has answered a probe sent after this call (or failed to): what the
   * gateway then knows of it, `held` slots included, is no older than the call. A probe already
   * under way may have been answered before, so it is awaited and another one sent.
   */
  async refresh(machine: Machine): Promise<void> {
    const earlier = this.probes.get(machine);
    if (earlier) await earlier;
    const later = this.probes.get(machine);
    await (later ?? this.probe(machine));
  }

  private probe(machine: Machine): Promise<void> {
    const running = this.probes.get(machine);
    if (running) return running;
    const probe = this.runProbe(machine).finally(() => this.probes.delete(machine));
    this.probes.set(machine, probe);
    return probe;
  }

  private async runProbe(machine: Machine): Promise<void> {
    if (!machine.beginProbe()) return;
    const { clock } = this.options;
    const started = clock.now();
    const client = machine.client;
    const deadline = linkSignals([this.abort.signal, clock.timeoutSignal(this.options.probeTimeoutMs)]);
    try {
      const health = await client.health(deadline.signal).finally(deadline.dispose);
      if (client !== machine.client) return;
      const now = clock.now();
      const wasDraining = machine.agentDraining;
      const heldBefore = machine.held.length;
      const canBefore = machine.can;
      machine.probeSucceeded(health, now);
      machine.probeAgainAt(now + this.options.healthIntervalMs);
      this.setHealth(machine, "up", undefined);
      if (machine.agentDraining !== wasDraining) this.agentDraining(machine);
      // A cancelled job's render ended: its slot takes work again.
      else if (machine.held.length < heldBefore) this.options.onChange();
      // An agent restarted with text to speech (or without) between two probes: other tasks fit it now.
      else if (canBefore !== undefined && machine.can !== canBefore) this.options.onChange();
      this.fenceStaleJobs(machine, [...health.running, ...health.queued]);
    } catch (err) {
      if (this.abort.signal.aborted || client !== machine.client) return;
      const reason = errorMessage(err);
      const failures = machine.probeFailed(reason, started);
      // A worker that restarts is refused at its port (or answered 5xx by a proxy in front of it)
      // for a few seconds, and such a probe costs nothing: it is asked every interval, so its slots
      // take work as soon as it listens, not up to the backoff's cap later. Backing off is for
      // probes that cost their wait (no answer until the timeout, no route to the host) and for a
      // refusal that lasts until someone changes a setting (a 4xx: a token that does not match,
      // another service on the port), which a refusal a second would only repeat in its log.
      const restarting =
        err instanceof WorkerUnreachableError
          ? err.refused
          : err instanceof WorkerHttpError && err.status >= 500;
      const over = restarting ? -1 : failures - this.options.failureThreshold;
      const backoff =
        over < 0 ? 0 : Math.min(MAX_PROBE_BACKOFF_MS, this.options.healthIntervalMs * 2 ** over);
      machine.probeAgainAt(clock.now() + Math.max(this.options.healthIntervalMs, backoff));
      if (failures >= this.options.failureThreshold) this.setHealth(machine, "down", reason);
    } finally {
      machine.endProbe();
    }
  }

  /**
   * Jobs a worker runs that the gateway no longer follows belong to attempts it gave up on (the
   * machine was declared dead, the task timed out, the gateway lost a PUT's answer). Cancel them:
   * their slots are the fleet's, and their results would never be used (fencing).
   */
  private fenceStaleJobs(machine: Machine, jobIds: readonly string[]): void {
    const live = this.options.liveJobs(machine);
    if (!live) return;
    for (const id of jobIds) {
      if (live.has(id)) continue;
      this.options.logger.warn(
        { machine: machine.name, attempt_id: id },
        "cancelling a stale job the gateway gave up on",
      );
      machine.client.cancelJob(id).catch((err: unknown) => {
        this.options.logger.warn(
          { machine: machine.name, attempt_id: id, err: errorMessage(err) },
          "cancel failed",
        );
      });
    }
  }

  private agentDraining(machine: Machine): void {
    const log = this.options.logger.child({ machine: machine.name });
    if (machine.agentDraining) {
      log.info(
        { running: machine.running.size },
        "machine's agent is stopping: no new work; its running tasks go on",
      );
    } else log.info("machine's agent takes work again");
    this.options.onChange();
  }

  private setHealth(machine: Machine, health: "up" | "down", error: string | undefined): void {
    const from = machine.health;
    if (!machine.setHealth(health, error)) return;
    const log = this.options.logger.child({ machine: machine.name });
    if (health === "up") log.info({ from, url: machine.client.baseUrl }, "machine is up");
    else log.warn({ from, reason: error }, "machine is down");
    this.options.onChange();
  }

  private sweepRemoved(): void {
    for (const machine of this.machines.values()) {
      if (machine.removed && machine.running.size === 0) {
        this.machines.delete(machine.name);
        this.options.logger.info({ machine: machine.name }, "removed machine has left the fleet");
      }
    }
  }

  private client(spec: MachineEntry): WorkerClient {
    const host = spec.host.includes(":") && !spec.host.startsWith("[") ? `[${spec.host}]` : spec.host;
    return new WorkerClient({
      baseUrl: `http://${host}:${spec.port}`,
      token: this.options.token,
      requestTimeoutMs: this.options.requestTimeoutMs,
    });
  }
}
