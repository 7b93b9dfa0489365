import { errorMessage } from "../../errors.js";
import type { Logger } from "../../logger.js";
import type { MachineStore } from "../../store/machine-store.js";
import type { TaskChange, TaskStore } from "../../store/task-store.js";
import type { BlobPush } from "../blob-push.js";
import type { CallbackSender } from "../callbacks/callback-sender.js";
import type { Clock } from "../clock.js";
import { Dispatcher, type DispatcherOptions } from "../dispatcher.js";
import type { Fleet, Machine } from "../fleet.js";
import { InputPrefetch } from "../input-prefetch.js";
import { OutageNote } from "../outage-note.js";
import type { PlacementPolicy } from "../placement/policy.js";
import type { RetentionSweeper } from "../retention-sweeper.js";
import { Scheduler } from "../scheduler.js";
import type { SpeedModel } from "../speed-model.js";
import { TaskDeadline } from "../task-deadline.js";
import type { Duties } from "./coordinator.js";
import type { FleetView } from "./fleet-view.js";

export interface DispatchDutiesOptions {
  readonly clock: Clock;
  readonly store: TaskStore;
  readonly fleet: Fleet;
  readonly speeds: SpeedModel;
  readonly machineStore: MachineStore;
  readonly logger: Logger;
  readonly placement: PlacementPolicy;
  /** What every term's dispatcher is made with, but its term and its wake-up. */
  readonly dispatcher: Omit<
    DispatcherOptions,
    "term" | "onSlotFree" | "clock" | "store" | "fleet" | "speeds" | "logger" | "push"
  >;
  /** `--task-timeout` (0: none). */
  readonly taskTimeoutMs: number;
  readonly sweeper: RetentionSweeper;
  /** A callback sender for a term (it needs the gateway's public URL, known once it listens). */
  readonly callbacks: () => CallbackSender;
  /** Published while dispatching on PostgreSQL, for the other gateways' GET /machines. */
  readonly fleetView?: FleetView | undefined;
  /** Sends inputs ahead to the busy machines their tasks wait for (input-prefetch.ts). */
  readonly push: BlobPush;
}

interface Term {
  readonly dispatcher: Dispatcher;
  readonly scheduler: Scheduler;
  readonly deadline: TaskDeadline;
  readonly outage: OutageNote;
  readonly callbacks: CallbackSender;
  readonly onChange: (change: TaskChange) => void;
}

/**
 * What the dispatching gateway does, and only it (coordinator.ts): place pending tasks
 * (scheduler), run and follow their attempts (dispatcher), stop the cancelled ones, end overdue
 * tasks, note outages on waiting tasks, sweep retention and send callbacks. A term begins by
 * re-attaching to the attempts under way, as after a restart, before anything new is placed:
 * `max_concurrent` holds across restarts and takeovers alike. It ends leaving those attempts
 * running on their machines for the next term (this gateway's or another's) to re-attach.
 */
export class DispatchDuties implements Duties {
  private term: Term | undefined;
  private placing = true;

  constructor(private readonly o: DispatchDutiesOptions) {}

  /** The dispatcher of the term under way, once it has re-attached to the live attempts. */
  get dispatcher(): Dispatcher | undefined {
    return this.term?.dispatcher;
  }

  /** Something may now be placed (a task, a free slot, a machine back). */
  wake(): void {
    if (!this.placing) return;
    this.term?.scheduler.wake();
    this.term?.outage.check();
  }

  /** A callback delivery may be due. */
  kickCallbacks(): void {
    this.term?.callbacks.kick();
  }

  abandonMachine(machine: Machine, reason: string): void {
    this.term?.dispatcher.abandonMachine(machine, reason);
  }

  /** The gateway drains: nothing new is placed; running attempts go on until it closes. */
  async stopPlacing(): Promise<void> {
    this.placing = false;
    this.term?.scheduler.close();
    await this.term?.outage.close();
  }

  async begin(epoch: number | undefined): Promise<void> {
    const o = this.o;
    if (epoch !== undefined) {
      // Learnt by the gateway that dispatched before, and set on any gateway since.
      o.speeds.reset();
      for (const sample of await o.machineStore.recentSpeeds(20))
        o.speeds.observe(sample.machine, sample.secondsPerAudioSecond);
      await this.applyMachineFlags();
    }
    const dispatcher = new Dispatcher({
      ...o.dispatcher,
      clock: o.clock,
      store: o.store,
      fleet: o.fleet,
      speeds: o.speeds,
      logger: o.logger,
      term: epoch,
      push: o.push,
      onSlotFree: () => this.wake(),
    });
    const prefetch = new InputPrefetch({ clock: o.clock, push: o.push, logger: o.logger });
    const scheduler = new Scheduler({
      clock: o.clock,
      store: o.store,
      fleet: o.fleet,
      speeds: o.speeds,
      placement: o.placement,
      logger: o.logger,
      dispatch: (task, machine) => dispatcher.dispatch(task, machine),
      prefetch,
    });
    const deadline = new TaskDeadline({
      clock: o.clock,
      store: o.store,
      dispatcher,
      timeoutMs: o.taskTimeoutMs,
      checkEveryMs: Math.max(1000, Math.min(60_000, Math.floor(o.taskTimeoutMs / 10))),
      logger: o.logger,
    });
    const onChange = (change: TaskChange) => this.onChange(dispatcher, change);
    const term: Term = {
      dispatcher,
      scheduler,
      deadline,
      outage: new OutageNote({ fleet: o.fleet, store: o.store, logger: o.logger }),
      callbacks: o.callbacks(),
      onChange,
    };
    // Live attempts claim their slots before anything new is placed.
    await dispatcher.resume(await o.store.liveAttempts());
    this.term = term;
    o.store.changes.on("change", onChange);
    term.callbacks.start();
    if (o.taskTimeoutMs > 0) deadline.start();
    // Also with --retention 0: the sweep then removes only orphans (files no task row needs).
    o.sweeper.start();
    if (epoch !== undefined) o.fleetView?.start(epoch);
    this.wake();
  }

  async end(): Promise<void> {
    const term = this.term;
    if (!term) return;
    this.term = undefined;
    this.o.store.changes.off("change", term.onChange);
    this.o.fleetView?.stop();
    term.scheduler.close();
    term.deadline.close();
    await term.outage.close();
    await this.o.sweeper.close();
    await term.dispatcher.close();
    await term.callbacks.close();
  }

  /** Drain flags as the store has them (set through any gateway). */
  async applyMachineFlags(): Promise<void> {
    const draining = await this.o.machineStore.drainingMachines();
    for (const machine of this.o.fleet.list()) machine.setDraining(draining.has(machine.name));
    this.wake();
  }

  private onChange(dispatcher: Dispatcher, { event, foreign }: TaskChange): void {
    // A cancel (here or on another gateway): the attempt's job stops on its machine.
    if (event.to_status === "cancelled" && event.from_status === "processing" && event.attempt_id) {
      const attemptId = event.attempt_id;
      void dispatcher.cancelAttempt(attemptId).catch((err: unknown) => {
        this.o.logger.error(
          { task_id: event.task_id, attempt_id: attemptId, err: errorMessage(err) },
          "stopping a cancelled attempt failed",
        );
      });
    }
    // Queued on another gateway (new, retried, back from a machine): this one places it.
    if (foreign && event.to_status === "pending") this.wake();
  }
}
