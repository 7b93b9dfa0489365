import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { serverRegistry } from "../http/metrics-route.js";
import { countCallbacksByState, countTasksByStatus } from "../store/ops-queries.js";
// Every status a task can have is exported (as 0 when empty), so a panel never has gaps.
import { TASK_STATUSES } from "../store/schema.js";
import type { TaskChange, TaskStore } from "../store/task-store.js";
import type { CallbackFailure } from "./callbacks/callback-sender.js";
import type { Fleet } from "./fleet.js";
import type { DeletionCounters, DeletionReason } from "./retention-sweeper.js";

const MACHINE_STATES = ["unknown", "up", "down", "draining", "disabled"] as const;
const CALLBACK_STATES = ["pending", "delivered", "given_up"] as const;

/** From seconds (an ffmpeg remux) to hours (a long HeyGem render, or a queue behind one). */
const DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

export interface GatewayMetricsOptions {
  readonly store: TaskStore;
  readonly fleet: Fleet;
  /** Whether this gateway dispatches (always, alone on SQLite; the elected one on PostgreSQL). */
  readonly dispatching?: () => boolean;
  /** Bytes of uploads held in memory now (BlobStore.heldBytes). */
  readonly heldBytes?: () => number;
}

/**
 * The gateway's Prometheus metrics (README, "Health and metrics"). Levels (tasks by status, the
 * queue, callback backlog, machines) are read at scrape time from the store and the fleet, so
 * they are right after a restart; what happens (waits, runs, attempts, uploads) is counted from
 * the store's committed changes, the events that are also the tasks' logs (design.md).
 */
export class GatewayMetrics implements DeletionCounters {
  readonly registry: Registry = serverRegistry("multi_heygem_gateway_");
  /** When each pending task joined the queue (created or requeued), by task id. */
  private readonly queuedAt = new Map<string, number>();
  /** When each live attempt started, by attempt id. */
  private readonly startedAt = new Map<string, number>();
  // Each gateway counts the changes it made: summed over the gateways on a store, every change
  // counts once (another gateway's, heard of through the store, is that gateway's to count).
  private readonly onChange = (change: TaskChange) => {
    if (!change.foreign) this.observe(change);
  };

  private readonly waitSeconds = new Histogram({
    name: "multi_heygem_task_wait_seconds",
    help: "Time a task waited in the queue before an attempt started (each attempt counts)",
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  private readonly runSeconds = new Histogram({
    name: "multi_heygem_attempt_run_seconds",
    help: "Time from an attempt's start to its end (result stored, or failed), by machine and outcome",
    labelNames: ["machine", "outcome"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  private readonly attempts = new Counter({
    name: "multi_heygem_attempts_total",
    help: "Attempts that ended, by machine and outcome (succeeded, failed, cancelled)",
    labelNames: ["machine", "outcome"] as const,
    registers: [this.registry],
  });

  private readonly failures = new Counter({
    name: "multi_heygem_attempt_failures_total",
    help: "Attempts that failed, by machine and whose fault it was (kind: input, machine)",
    labelNames: ["machine", "kind"] as const,
    registers: [this.registry],
  });

  private readonly uploadBytes = new Counter({
    name: "multi_heygem_upload_bytes_total",
    help:
      "Bytes of the inputs uploaded with accepted tasks, by field (audio, video; a task with an avatar_id " +
      "uploads no video)",
    labelNames: ["field"] as const,
    registers: [this.registry],
  });

  private readonly callbackTriesFailed = new Counter({
    name: "multi_heygem_callback_tries_failed_total",
    help:
      "Callback tries that did not deliver, by reason (http_status: a non-2xx answer; timeout; " +
      "connection: no connection or it broke; refused: the address policy forbids the target)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  /** For CallbackSender's `onTryFailed`. */
  readonly callbackTryFailed = (reason: CallbackFailure): void => {
    this.callbackTriesFailed.inc({ reason });
  };

  private readonly tasksCreated = new Counter({
    name: "multi_heygem_tasks_created_total",
    help: "Tasks accepted since the gateway started",
    registers: [this.registry],
  });

  private readonly filesExpiredTotal = new Counter({
    name: "multi_heygem_task_files_expired_total",
    help: "Finished tasks whose inputs and result were released by --retention (their blobs go unless shared)",
    registers: [this.registry],
  });

  private readonly tasksDeletedTotal = new Counter({
    name: "multi_heygem_tasks_deleted_total",
    help: "Task records deleted, by reason (retention: --retention-rows; request: DELETE /tasks/{id})",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  private readonly blobsDeletedTotal = new Counter({
    name: "multi_heygem_blobs_deleted_total",
    help: "Blob files deleted once no task needed them, by reason (retention, request, orphan)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  private readonly blobBytesDeletedTotal = new Counter({
    name: "multi_heygem_blobs_deleted_bytes_total",
    help: "Bytes of the blob files deleted, by reason (retention, request, orphan)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  constructor(private readonly o: GatewayMetricsOptions) {
    const { store, fleet } = o;
    // Zero from the start, so a rate() over them has a series before the first deletion.
    for (const reason of ["retention", "request"] as const) this.tasksDeletedTotal.inc({ reason }, 0);
    for (const reason of ["retention", "request", "orphan"] as const) this.blobsDeleted(reason, 0, 0);
    const registers = [this.registry];
    const taskCounts = () => countTasksByStatus(store.db);

    new Gauge({
      name: "multi_heygem_tasks",
      help: "Tasks in the store, by status",
      labelNames: ["status"] as const,
      registers,
      async collect() {
        const counts = await taskCounts();
        for (const status of new Set([...TASK_STATUSES, ...counts.keys()]))
          this.set({ status }, counts.get(status) ?? 0);
      },
    });

    new Gauge({
      name: "multi_heygem_queue_depth",
      help: "Tasks waiting for a machine (status pending)",
      registers,
      async collect() {
        this.set((await taskCounts()).get("pending") ?? 0);
      },
    });

    new Gauge({
      name: "multi_heygem_callback_deliveries",
      help: "Callback deliveries in the store, by state (pending is the backlog, given_up the failures)",
      labelNames: ["state"] as const,
      registers,
      async collect() {
        const counts = await countCallbacksByState(store.db);
        for (const state of new Set([...CALLBACK_STATES, ...counts.keys()]))
          this.set({ state }, counts.get(state) ?? 0);
      },
    });

    new Gauge({
      name: "multi_heygem_machines",
      help: "Machines of the fleet, by state (unknown, up, down, draining, disabled)",
      labelNames: ["state"] as const,
      registers,
      collect() {
        const counts = new Map<string, number>(MACHINE_STATES.map((s) => [s, 0]));
        for (const m of fleet.list()) counts.set(m.state, (counts.get(m.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });

    // Per machine: reset first, so a machine removed from machines.json stops being reported.
    const perMachine = (
      name: string,
      help: string,
      value: (m: ReturnType<Fleet["list"]>[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["machine"] as const,
        registers,
        collect() {
          this.reset();
          for (const m of fleet.list()) this.set({ machine: m.name }, value(m));
        },
      });
    const dispatching = this.o.dispatching ?? (() => true);
    new Gauge({
      name: "multi_heygem_gateway_dispatching",
      help: "1 while this gateway dispatches for every gateway on its store (issue 13), else 0",
      registers,
      collect() {
        this.set(dispatching() ? 1 : 0);
      },
    });
    const heldBytes = this.o.heldBytes ?? (() => 0);
    new Gauge({
      name: "multi_heygem_upload_held_bytes",
      help: "Bytes of uploads held in memory now: files of up to 1 MiB until their hash is known (64 MiB at most)",
      registers,
      collect() {
        this.set(heldBytes());
      },
    });
    perMachine("multi_heygem_machine_up", "1 when the machine is up and takes work, else 0", (m) =>
      m.placeable ? 1 : 0,
    );
    perMachine(
      "multi_heygem_machine_running",
      "Attempts holding a slot of the machine",
      (m) => m.running.size,
    );
    perMachine(
      "multi_heygem_machine_capacity",
      "Slots of the machine: max_concurrent, or fewer when its agent reports fewer",
      (m) => m.capacity,
    );
  }

  filesExpired(tasks: number): void {
    this.filesExpiredTotal.inc(tasks);
  }

  tasksDeleted(reason: DeletionReason, tasks: number): void {
    this.tasksDeletedTotal.inc({ reason }, tasks);
  }

  blobsDeleted(reason: DeletionReason, blobs: number, bytes: number): void {
    this.blobsDeletedTotal.inc({ reason }, blobs);
    this.blobBytesDeletedTotal.inc({ reason }, bytes);
  }

  start(): void {
    this.o.store.changes.on("change", this.onChange);
  }

  close(): void {
    this.o.store.changes.off("change", this.onChange);
  }

  private observe({ task, event }: TaskChange): void {
    const at = Date.parse(event.at);
    if (event.type === "created") {
      this.tasksCreated.inc();
      this.uploadBytes.inc({ field: "audio" }, task.audio_bytes);
      // An avatar's video was uploaded once, with POST /avatars, not with this task (issue 12).
      if (task.avatar_id === null) this.uploadBytes.inc({ field: "video" }, task.video_bytes);
      return;
    }
    if (event.from_status === null && event.to_status === null) return;
    if (event.from_status === "pending") {
      // A task queued before this process started waited since its creation at the latest.
      const since = this.queuedAt.get(task.id) ?? Date.parse(task.created_at);
      this.queuedAt.delete(task.id);
      if (event.to_status === "processing") {
        this.waitSeconds.observe(Math.max(0, (at - since) / 1000));
        if (event.attempt_id) this.startedAt.set(event.attempt_id, at);
      }
    }
    if (event.to_status === "pending") this.queuedAt.set(task.id, at);
    if (event.from_status !== "processing" || !event.attempt_id) return;

    const machine = event.machine ?? "unknown";
    const outcome =
      event.to_status === "completed"
        ? "succeeded"
        : event.to_status === "cancelled"
          ? "cancelled"
          : "failed";
    this.attempts.inc({ machine, outcome });
    if (outcome === "failed") {
      // Only a machine's failure sends a task back to the queue (dispatcher.ts); a failure that
      // ends the task carries its kind on the task row.
      const kind = event.to_status === "pending" ? "machine" : (task.error_kind ?? "machine");
      this.failures.inc({ machine, kind });
    }
    const started = this.startedAt.get(event.attempt_id);
    this.startedAt.delete(event.attempt_id);
    // An attempt re-attached after a restart has no start time here; its run is not observed.
    if (started !== undefined)
      this.runSeconds.observe({ machine, outcome }, Math.max(0, (at - started) / 1000));
  }
}
