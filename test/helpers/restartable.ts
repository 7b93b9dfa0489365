import type { Started } from "./processes.js";

/**
 * A gateway or worker child process on a fixed port, killed with SIGKILL and started again as the
 * same member of the fleet: the same address (machines.json, a client's list of gateways) and the
 * same data dir. An exit nobody asked for is a crash: it is reported with the end of the
 * process's output, so a chaos test fails on it instead of quietly restarting it.
 */
export class Restartable {
  private current: Started | undefined;
  private readonly lives: Started[] = [];
  private stderr = "";
  /** SIGKILLs sent. */
  kills = 0;
  /** Lives begun (the first start included). */
  starts = 0;

  constructor(
    readonly kind: "gateway" | "worker",
    readonly name: string,
    readonly port: number,
    private readonly launch: () => Promise<Started>,
    private readonly onCrash: (report: string) => void,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Started and not killed (nor crashed) since. */
  get up(): boolean {
    return this.current !== undefined;
  }

  async start(): Promise<void> {
    if (this.current) throw new Error(`${this.name} is running already`);
    const started = await this.launch();
    this.current = started;
    this.lives.push(started);
    this.starts++;
    started.child.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    started.child.once("exit", (code, signal) => {
      if (this.current !== started) return;
      this.current = undefined;
      this.onCrash(
        `${this.name} exited by itself (${code ?? signal}):\n${started.lines.slice(-30).join("\n")}\n${this.stderr}`,
      );
    });
  }

  /** Everything it logged, life after life, and what it wrote to stderr lately: to look into a failure. */
  output(): string {
    return `${this.lives.map((l) => l.lines.join("\n")).join("\n--- restart ---\n")}\n${this.stderr}`;
  }

  /** SIGKILL, as `kill -9`; resolves once the process is gone. */
  async kill(): Promise<void> {
    const started = this.current;
    if (!started) return;
    // Down from this moment: its exit is ours, not a crash.
    this.current = undefined;
    this.kills++;
    await started.kill();
  }
}
