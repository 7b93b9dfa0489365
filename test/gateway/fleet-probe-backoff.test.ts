import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Fleet, Machine } from "../../src/gateway/fleet.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { fakeClockFleet, idleHealth } from "../helpers/fake-clock-fleet.js";
import { until } from "../helpers/until.js";

const INTERVAL_MS = 1000;
const PROBE_TIMEOUT_MS = 500;
const STEP_MS = 100;
const UNAUTHORIZED = JSON.stringify({ error: "TOKEN_MISMATCH", message: "the worker token does not match" });

type Mode = "ok" | "503" | "401" | "silent";

/**
 * How often a machine that is down is probed, on a fake clock against a real HTTP server: one
 * that looks like a worker restarting (its port refused, or 5xx) is asked every interval, so it
 * gets work as soon as it is back; one that does not answer at all (each probe costs its timeout)
 * or refuses the gateway (4xx: a setting to change) is asked less and less often, up to 8 s apart.
 */
describe("probing a machine that is down (fake clock)", () => {
  let server: Server;
  let port: number;
  let mode: Mode;
  let clock: FakeClock;
  let fleet: Fleet;

  const listen = async () => {
    server = createServer((_req, res) => {
      if (mode === "ok")
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(idleHealth()));
      else if (mode === "503") res.writeHead(503).end();
      else if (mode === "401") res.writeHead(401, { "content-type": "application/json" }).end(UNAUTHORIZED);
      // "silent": the request is read and never answered; the probe's timeout ends it.
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  };

  const stopListening = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });

  beforeEach(async () => {
    mode = "ok";
    port = 0;
    await listen();
    clock = new FakeClock();
    fleet = fakeClockFleet(clock, {
      healthIntervalMs: INTERVAL_MS,
      probeTimeoutMs: PROBE_TIMEOUT_MS,
      graceMs: 60_000,
    });
  });

  afterEach(async () => {
    fleet.close();
    if (server.listening) await stopListening();
  });

  const upMachine = async (): Promise<Machine> => {
    const machine = fleet.add({ name: "gpu", host: "127.0.0.1", port, max_concurrent: 1, enabled: true });
    fleet.start();
    await until(() => machine.state === "up");
    return machine;
  };

  /**
   * Moves the clock in steps until `count` more probes have failed, and returns when each of them
   * started (ms after the first). Every probe is let to end before the clock moves past its
   * timeout, so that it schedules the next one from the very moment it failed.
   */
  const failedProbes = async (machine: Machine, count: number): Promise<number[]> => {
    const starts: number[] = [];
    const target = machine.consecutiveFailures + count;
    let inFlightSince: number | undefined;
    while (machine.consecutiveFailures < target) {
      clock.advance(STEP_MS);
      if (inFlightSince === undefined && machine.probing) {
        inFlightSince = clock.now();
        starts.push(inFlightSince);
      }
      if (inFlightSince === undefined) continue;
      const failures = machine.consecutiveFailures;
      // A refused or answered probe fails at once; a silent one when its timeout is crossed.
      if (mode !== "silent" || clock.now() - inFlightSince >= PROBE_TIMEOUT_MS) {
        await until(() => !machine.probing && machine.consecutiveFailures === failures + 1, 10_000, {
          what: "the probe to fail",
        });
        inFlightSince = undefined;
      }
    }
    return starts.map((t) => t - (starts[0] as number));
  };

  it("a machine whose port refuses is asked every interval, and is up one interval after it listens again", async () => {
    const machine = await upMachine();
    await stopListening();
    const starts = await failedProbes(machine, 6);
    expect(machine.state).toBe("down");
    expect(machine.lastError).toContain("ECONNREFUSED");
    expect(starts).toEqual([0, 1, 2, 3, 4, 5].map((k) => k * INTERVAL_MS));

    await listen();
    clock.advance(INTERVAL_MS);
    await until(() => machine.state === "up", 10_000, { what: "the machine up again" });
  });

  it("a machine that answers 5xx (a proxy in front of a restarting agent) is asked every interval", async () => {
    const machine = await upMachine();
    mode = "503";
    const starts = await failedProbes(machine, 6);
    expect(machine.state).toBe("down");
    expect(starts).toEqual([0, 1, 2, 3, 4, 5].map((k) => k * INTERVAL_MS));
  });

  it("a machine that does not answer is asked less and less often, up to 8 s apart", async () => {
    const machine = await upMachine();
    mode = "silent";
    const starts = await failedProbes(machine, 8);
    expect(machine.state).toBe("down");
    const gaps = starts.slice(1).map((t, i) => t - (starts[i] as number));
    // Each probe fails at its timeout and the next is due a delay later, on the next tick: a
    // delay of one interval while under the threshold, then doubling from one interval, capped.
    const delays = [1000, 1000, 2000, 4000, 8000, 8000, 8000];
    expect(gaps).toEqual(delays.map((d) => Math.ceil((PROBE_TIMEOUT_MS + d) / INTERVAL_MS) * INTERVAL_MS));
  });

  it("a machine that refuses the gateway (401) is asked less and less often, up to 8 s apart", async () => {
    const machine = await upMachine();
    mode = "401";
    const starts = await failedProbes(machine, 8);
    expect(machine.state).toBe("down");
    expect(machine.lastError).toContain("the worker token does not match");
    const gaps = starts.slice(1).map((t, i) => t - (starts[i] as number));
    // It fails at once, so each next probe is due exactly its delay later, on a tick.
    expect(gaps).toEqual([1000, 1000, 2000, 4000, 8000, 8000, 8000]);
  });
});
