import { type Child, logTail } from "./harness.js";

/**
 * A gateway or worker child on a fixed port, killed with SIGKILL and started again as the same
 * member of the fleet (same address, same data dir). An exit nobody asked for is a crash,
 * reported with the end of its log.
 */
export class Restartable {
  private current: Child | undefined;
  kills = 0;
  starts = 0;

  constructor(
    readonly kind: "gateway" | "worker",
    readonly name: string,
    readonly port: number,
    private readonly launch: () => Promise<Child>,
    private readonly onCrash: (report: string) => void,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get up(): boolean {
    return this.current !== undefined;
  }

  async start(): Promise<void> {
    if (this.current) throw new Error(`${this.name} is running already`);
    const child = await this.launch();
    this.current = child;
    this.starts++;
    child.process.once("exit", (code, signal) => {
      if (this.current !== child) return;
      this.current = undefined;
      void logTail(child, 30).then((tail) =>
        this.onCrash(`${this.name} exited by itself (${code ?? signal}), ${child.logPath}:\n${tail}`),
      );
    });
  }

  /** `kill -9`; resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.current;
    if (!child) return;
    this.current = undefined;
    this.kills++;
    await child.kill();
  }
}
