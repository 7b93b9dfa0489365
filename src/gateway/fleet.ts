import type { MachineEntry } from "../config/machines-file.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Health } from "../protocol/schemas.js";
import { WorkerClient } from "../protocol/worker-client.js";

export type MachineState = "unknown" | "up" | "down" | "disabled";

/** One worker agent as the gateway sees it. `running` holds the live attempt ids placed on it. */
export class Machine {
  state: MachineState;
  readonly running = new Set<string>();
  lastError: string | undefined;
  lastSeen: Date | undefined;
  health: Health | undefined;

  constructor(
    readonly spec: MachineEntry,
    readonly client: WorkerClient,
  ) {
    this.state = spec.enabled ? "unknown" : "disabled";
  }

  get name(): string {
    return this.spec.name;
  }

  get freeSlots(): number {
    return Math.max(0, this.spec.max_concurrent - this.running.size);
  }

  get acceptsWork(): boolean {
    return this.state === "up" && this.freeSlots > 0;
  }
}

export interface FleetOptions {
  token: string | undefined;
  healthIntervalMs: number;
  requestTimeoutMs: number;
  logger: Logger;
  /** Called whenever a machine's state changes, so the scheduler can place work. */
  onChange: () => void;
}

/** The machines of `machines.json` (and the embedded worker) and their health. */
export class Fleet {
  private readonly machines = new Map<string, Machine>();
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly options: FleetOptions) {}

  add(spec: MachineEntry): Machine {
    const client = new WorkerClient({
      baseUrl: `http://${hostForUrl(spec.host)}:${spec.port}`,
      token: this.options.token,
      requestTimeoutMs: this.options.requestTimeoutMs,
    });
    const machine = new Machine(spec, client);
    this.machines.set(spec.name, machine);
    return machine;
  }

  get(name: string): Machine | undefined {
    return this.machines.get(name);
  }

  list(): Machine[] {
    return [...this.machines.values()];
  }

  /** Probes every machine now and then on the interval. */
  start(): void {
    void this.probeAll();
    this.timer = setInterval(() => void this.probeAll(), this.options.healthIntervalMs);
    this.timer.unref();
  }

  async probeAll(): Promise<void> {
    await Promise.all(this.list().map((m) => this.probe(m)));
  }

  /** A dispatcher saw the machine fail; take it out of placement until a probe says otherwise. */
  reportUnreachable(machine: Machine, reason: string): void {
    this.setState(machine, "down", reason);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.abort.abort();
  }

  private async probe(machine: Machine): Promise<void> {
    if (!machine.spec.enabled) return;
    try {
      const health = await machine.client.health(
        AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.options.requestTimeoutMs)]),
      );
      machine.health = health;
      machine.lastSeen = new Date();
      this.setState(machine, "up", undefined);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      this.setState(machine, "down", errorMessage(err));
    }
  }

  private setState(machine: Machine, state: MachineState, error: string | undefined): void {
    if (error !== undefined) machine.lastError = error;
    if (machine.state === state) return;
    const from = machine.state;
    machine.state = state;
    const log = this.options.logger.child({ machine: machine.name });
    if (state === "up") log.info({ from, url: machine.client.baseUrl }, "machine is up");
    else log.warn({ from, reason: error }, `machine is ${state}`);
    this.options.onChange();
  }
}

function hostForUrl(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
