/** One HeyGem gen-video container: its API and the host folder mapped to its /code/data. */
export interface HeygemInstanceConfig {
  /** For logs and /v1/health; `host:port` of the URL unless the config file names it. */
  readonly name: string;
  readonly url: string;
  readonly dataDir: string;
}

/**
 * The heygem engine's settings, parsed once at start-up (README, "HeyGem machines"). The engine
 * owns their shape; config/heygem-config.ts fills them from the flags and worker.json.
 */
export interface HeygemSettings {
  readonly instances: readonly HeygemInstanceConfig[];
  /** Between two `/easy/query` calls of a running task. */
  readonly pollIntervalMs: number;
  /** A running task whose progress does not change for this long is stalled (the machine's fault). */
  readonly stallTimeoutMs: number;
  /** Overall limit of one task: this base plus `timeoutPerAudioSecondMs` per second of audio. */
  readonly timeoutBaseMs: number;
  readonly timeoutPerAudioSecondMs: number;
  /** How long a job waits, queued, while instances answer busy (10001) before it fails. */
  readonly busyTimeoutMs: number;
  /** First wait after a busy answer; it doubles up to a minute. */
  readonly busyBackoffMs: number;
  /** Bound on one HTTP call to a container. */
  readonly requestTimeoutMs: number;
  /** How often an idle instance is asked whether it is there (an unhealthy one comes back so). */
  readonly probeIntervalMs: number;
  /** How long a container may stay unreachable while it runs a task before the task is failed. */
  readonly unreachableGraceMs: number;
}
