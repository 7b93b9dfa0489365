import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Fleet, Machine } from "../../src/gateway/fleet.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { fakeClockFleet, idleHealth } from "../helpers/fake-clock-fleet.js";
import { until } from "../helpers/until.js";

const INTERVAL_MS = 1000;
const GRACE_MS = 5000;

/**
 * The fleet's grace period on a fake clock: a machine that stops answering while it holds an
 * attempt is declared lost exactly `graceMs` after its first failed probe, once, without the test
 * waiting a second of real time. The worker is a real HTTP server that can be told to fail.
 */
describe("fleet grace period (fake clock)", () => {
  let server: Server;
  let failing: boolean;
  let clock: FakeClock;
  let fleet: Fleet;
  let lost: Array<{ machine: string; at: number }>;

  beforeEach(async () => {
    failing = false;
    server = createServer((_req, res) => {
      if (failing) res.writeHead(503).end();
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(idleHealth()));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    clock = new FakeClock();
    lost = [];
    fleet = fakeClockFleet(
      clock,
      { healthIntervalMs: INTERVAL_MS, probeTimeoutMs: 5000, graceMs: GRACE_MS },
      (m) => lost.push({ machine: m.name, at: clock.now() }),
    );
  });

  afterEach(async () => {
    fleet.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Moves the clock one probe interval and waits for the probe that started to settle. */
  const step = async (machine: Machine, expectFailures: number) => {
    clock.advance(INTERVAL_MS);
    await until(() => machine.consecutiveFailures === expectFailures, 10_000, { what: "probe" });
  };

  it("hands a busy machine's attempts on exactly once, graceMs after its first failed probe", async () => {
    const { port } = server.address() as AddressInfo;
    const machine = fleet.add({ name: "gpu", host: "127.0.0.1", port, max_concurrent: 1, enabled: true });
    const t0 = clock.now();
    fleet.start();
    await until(() => machine.state === "up");
    expect(machine.tryClaim("att-1", { taskId: "t1", audioDuration: 1, startedAt: t0 })).toBe(true);

    failing = true;
    await step(machine, 1);
    const outage = t0 + INTERVAL_MS;
    expect(machine.unreachableSince).toBe(outage);
    expect(machine.state).toBe("up");
    await step(machine, 2);
    expect(machine.state).toBe("down");

    // Up to the last millisecond of the grace period, the attempts stay where they are.
    clock.advance(outage + GRACE_MS - 1 - clock.now());
    expect(lost).toEqual([]);
    clock.advance(1);
    expect(lost).toEqual([{ machine: "gpu", at: outage + GRACE_MS }]);
    clock.advance(10 * INTERVAL_MS);
    expect(lost).toHaveLength(1);
  });

  it("an idle machine that goes away is never declared lost", async () => {
    const { port } = server.address() as AddressInfo;
    const machine = fleet.add({ name: "gpu", host: "127.0.0.1", port, max_concurrent: 1, enabled: true });
    fleet.start();
    await until(() => machine.state === "up");
    failing = true;
    await step(machine, 1);
    clock.advance(3 * GRACE_MS);
    expect(lost).toEqual([]);
  });
});
