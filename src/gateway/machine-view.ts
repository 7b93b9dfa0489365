import type { Static } from "@sinclair/typebox";
import type { MachineCounts } from "../store/machine-store.js";
import type { MachineView } from "./api/schemas.js";
import type { Machine } from "./fleet.js";
import type { SpeedModel } from "./speed-model.js";

export type MachineViewBody = Static<typeof MachineView>;

/**
 * One machine as GET /machines shows it. Its load (`running`, `held`) is the attempts the
 * dispatching gateway follows; a gateway that does not dispatch shows the one published by the
 * gateway that does (issue 13, fleet-view.ts).
 */
export function machineView(m: Machine, speeds: SpeedModel, counts?: MachineCounts): MachineViewBody {
  const measured = speeds.measured(m.name);
  return {
    name: m.name,
    host: m.spec.host,
    port: m.spec.port,
    state: m.state,
    enabled: m.spec.enabled,
    draining: m.draining,
    agent_draining: m.agentDraining,
    running: m.running.size,
    held: m.busySlots - m.running.size,
    max_concurrent: m.spec.max_concurrent,
    capacity: m.capacity,
    warnings: m.warnings,
    tasks_done: counts?.done ?? 0,
    tasks_failed: counts?.failed ?? 0,
    speed: measured ? Number(measured.value.toFixed(4)) : null,
    speed_samples: measured?.samples ?? 0,
    last_error: m.lastError ?? null,
    last_seen: m.lastSeen?.toISOString() ?? null,
    consecutive_failures: m.consecutiveFailures,
    engine: m.info?.engine ?? null,
    version: m.info?.version ?? null,
    free_disk_bytes: m.info?.free_disk_bytes ?? null,
    containers: (m.info?.instances ?? []).map((i) => ({
      name: i.name,
      reachable: i.reachable,
      healthy: i.healthy ?? true,
      busy: i.busy,
      job: i.job ?? null,
      last_error: i.last_error ?? null,
    })),
  };
}
