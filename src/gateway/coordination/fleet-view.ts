import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { FleetViewStore } from "../../store/fleet-view-store.js";
import type { Clock, Timer } from "../clock.js";
import type { Fleet } from "../fleet.js";
import { type MachineViewBody, machineView } from "../machine-view.js";
import type { SpeedModel } from "../speed-model.js";

/** How often the dispatching gateway publishes its view of the fleet. */
export const FLEET_VIEW_EVERY_MS = 2000;
/** A published view older than this is from a gateway no longer dispatching: not shown. */
const STALE_AFTER_MS = 5 * FLEET_VIEW_EVERY_MS;

export interface FleetViewOptions {
  readonly clock: Clock;
  readonly fleet: Fleet;
  readonly speeds: SpeedModel;
  readonly views: FleetViewStore;
  readonly logger: Logger;
  /** Whether this gateway dispatches now. */
  readonly dispatching: () => boolean;
  readonly gateway: string;
}

/**
 * GET /machines, the same from every gateway on a PostgreSQL store (issue 13). A machine's load
 * is the attempts the dispatching gateway follows and its measured speed is what that gateway
 * learnt, so that gateway publishes its view every FLEET_VIEW_EVERY_MS, and the others show it.
 * Each gateway probes the machines itself too (it needs their abilities to refuse what no
 * machine can do); its own view stands in when nothing fresh is published.
 */
export class FleetView {
  private timer: Timer | undefined;
  private epoch = 0;

  constructor(private readonly o: FleetViewOptions) {}

  /** The machines as every gateway shows them (their done/failed counts are read by the caller). */
  async machines(): Promise<MachineViewBody[]> {
    const own = () => this.o.fleet.list().map((m) => machineView(m, this.o.speeds));
    if (this.o.dispatching()) return own();
    const published = await this.o.views.read();
    if (!published || this.o.clock.now() - Date.parse(published.publishedAt) > STALE_AFTER_MS) return own();
    return published.machines as MachineViewBody[];
  }

  /** Publishes this gateway's view until `stop()`: it dispatches under `epoch`. */
  start(epoch: number): void {
    this.epoch = epoch;
    this.timer?.cancel();
    void this.publish();
    this.timer = this.o.clock.setInterval(() => void this.publish(), FLEET_VIEW_EVERY_MS);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private async publish(): Promise<void> {
    try {
      await this.o.views.publish({
        gateway: this.o.gateway,
        epoch: this.epoch,
        publishedAt: new Date(this.o.clock.now()).toISOString(),
        machines: this.o.fleet.list().map((m) => machineView(m, this.o.speeds)),
      });
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err) }, "publishing the fleet view failed");
    }
  }
}
