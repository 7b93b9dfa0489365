import { setMaxListeners } from "node:events";

/** A signal that follows several others, and lets go of them once it is no longer needed. */
export interface LinkedSignal {
  /** Aborts, with its reason, as soon as the first of the sources does. */
  readonly signal: AbortSignal;
  /** Detaches from the sources; safe to call more than once, and called by the first abort. */
  dispose(): void;
}

/**
 * `AbortSignal.any(sources)` for a process that runs for months. Node 20's `AbortSignal.any` adds
 * a WeakRef to a set kept on every source and never takes it out, so each call with a long-lived
 * source (a gateway's shutdown signal, once per task; its fleet's, once per health probe) keeps
 * ~70 bytes for the life of the process: found by the soak benchmark (bench/soak.ts, issue 14) as
 * one WeakRef per task in heap snapshots. Here the link is a listener on each source, removed by
 * `dispose()` when the work the signal guards is over.
 */
export function linkSignals(sources: readonly AbortSignal[]): LinkedSignal {
  const controller = new AbortController();
  const aborted = sources.find((s) => s.aborted);
  if (aborted) {
    controller.abort(aborted.reason);
    return { signal: controller.signal, dispose: () => undefined };
  }
  const onAbort = (event: Event) => {
    dispose();
    controller.abort((event.target as AbortSignal).reason);
  };
  const dispose = () => {
    for (const source of sources) source.removeEventListener("abort", onAbort);
  };
  for (const source of sources) {
    // A long-lived source carries one listener per piece of work under way (a fleet of 50
    // machines: hundreds of attempts), each removed by `dispose()`: Node's warning at 11, meant
    // for listeners that are never removed, would fire on every busy gateway.
    setMaxListeners(0, source);
    source.addEventListener("abort", onAbort, { once: true });
  }
  return { signal: controller.signal, dispose };
}
