import { Counter, Gauge, Histogram, type Metric, type Registry } from "prom-client";
import type { Engine } from "../engines/engine.js";
import { serverRegistry } from "../http/metrics-route.js";
import type { JobView } from "../protocol/schemas.js";

/** From an ffmpeg remux (well under a second) to a long HeyGem render. */
const ENGINE_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

export interface WorkerMetricsOptions {
  readonly engine: Engine;
  /** Jobs the engine works on, and jobs waiting for one of its slots, now. */
  readonly running: () => number;
  readonly queued: () => number;
  /** The input cache (blob-cache.ts), read at scrape time. */
  readonly cache: { readonly bytes: number; readonly maxBytes: number };
}

/**
 * A worker agent's Prometheus metrics (README, "Health and metrics"): the jobs it ended and how
 * long its engine worked on them, counted as they end; its load and its HeyGem containers, read
 * at scrape time from what `/v1/health` reports.
 */
export class WorkerMetrics {
  readonly registry: Registry = serverRegistry("multi_heygem_worker_");
  /** This worker's metrics without the process ones, which the gateway shows for its embedded worker. */
  readonly own: Metric[];

  private readonly jobs = new Counter({
    name: "multi_heygem_worker_jobs_total",
    help: "Jobs that ended on this worker, by status (succeeded, failed, cancelled) and failure kind",
    labelNames: ["status", "kind"] as const,
    registers: [this.registry],
  });

  private readonly engineSeconds = new Histogram({
    name: "multi_heygem_worker_engine_seconds",
    help: "Time the engine worked on a job (from its start to its end; queueing excluded), by status",
    labelNames: ["status"] as const,
    buckets: ENGINE_BUCKETS,
    registers: [this.registry],
  });

  private readonly evictions = new Counter({
    name: "multi_heygem_worker_blob_cache_evictions_total",
    help: "Inputs removed from the blob cache to keep it under --cache-max-gb (least recently used first)",
    registers: [this.registry],
  });

  constructor(o: WorkerMetricsOptions) {
    const registers = [this.registry];
    const gauges: Metric[] = [];
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_jobs",
        help: "Jobs on this worker now, by state (running, queued)",
        labelNames: ["state"] as const,
        registers,
        collect() {
          this.set({ state: "running" }, o.running());
          this.set({ state: "queued" }, o.queued());
        },
      }),
    );
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_capacity",
        help: "Jobs the engine runs at once (max_concurrent in /v1/health)",
        registers,
        collect() {
          this.set(Math.max(1, Math.floor(o.engine.capacity)));
        },
      }),
    );
    // Reset at each scrape so that an instance no longer configured is no longer reported.
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_container_healthy",
        help: "1 when the engine's instance (a HeyGem container) is reachable and healthy, else 0",
        labelNames: ["container"] as const,
        registers,
        collect() {
          this.reset();
          for (const i of o.engine.instances?.() ?? [])
            this.set({ container: i.name }, i.reachable && i.healthy !== false ? 1 : 0);
        },
      }),
    );
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_container_busy",
        help: "1 when the engine's instance (a HeyGem container) is rendering a job, else 0",
        labelNames: ["container"] as const,
        registers,
        collect() {
          this.reset();
          for (const i of o.engine.instances?.() ?? []) this.set({ container: i.name }, i.busy ? 1 : 0);
        },
      }),
    );
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_blob_cache_bytes",
        help: "Bytes of uploaded inputs (audio, template videos) the worker keeps in its blob cache",
        registers,
        collect() {
          this.set(o.cache.bytes);
        },
      }),
    );
    gauges.push(
      new Gauge({
        name: "multi_heygem_worker_blob_cache_limit_bytes",
        help: "The blob cache's soft limit (--cache-max-gb) in bytes; 0 when it has none",
        registers,
        collect() {
          this.set(o.cache.maxBytes);
        },
      }),
    );
    this.own = [this.jobs, this.engineSeconds, this.evictions, ...gauges];
  }

  readonly blobsEvicted = (count: number): void => {
    this.evictions.inc(count);
  };

  /** A job ended (JobTransitions): counted once, with the engine's time when it ran at all. */
  readonly jobFinished = (view: JobView): void => {
    this.jobs.inc({ status: view.status, kind: view.error?.kind ?? "" });
    if (!view.started_at || !view.finished_at) return;
    const seconds = (Date.parse(view.finished_at) - Date.parse(view.started_at)) / 1000;
    if (Number.isFinite(seconds) && seconds >= 0)
      this.engineSeconds.observe({ status: view.status }, seconds);
  };
}
