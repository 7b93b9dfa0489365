import { Fleet } from "../../src/gateway/fleet.js";
import type { Machine } from "../../src/gateway/machine.js";
import { createLogger } from "../../src/logger.js";
import { type Health, PROTOCOL_VERSION } from "../../src/protocol/schemas.js";
import type { FakeClock } from "./fake-clock.js";

/** What a worker's `GET /v1/health` answers when it runs nothing. */
export function idleHealth(maxConcurrent = 1): Health {
  return {
    protocol: PROTOCOL_VERSION,
    engine: "ffmpeg",
    version: "test",
    max_concurrent: maxConcurrent,
    running: [],
    queued: [],
    free_disk_bytes: 1,
  };
}

/**
 * A Fleet on a fake clock, silent, with a circuit that opens after two failed probes: the health
 * tests move time themselves and watch what the fleet does with each probe.
 */
export function fakeClockFleet(
  clock: FakeClock,
  timings: { healthIntervalMs: number; probeTimeoutMs: number; graceMs: number },
  onLost: (machine: Machine) => void = () => undefined,
): Fleet {
  return new Fleet({
    clock,
    token: undefined,
    ...timings,
    requestTimeoutMs: 60_000,
    failureThreshold: 2,
    logger: createLogger({ level: "silent", format: "json" }),
    onChange: () => undefined,
    onLost,
    liveJobs: (m) => m.running,
  });
}
