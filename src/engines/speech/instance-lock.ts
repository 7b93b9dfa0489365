/**
 * One holder at a time, the others waiting in order: a fish-speech container serves one request
 * at a time (heygem-tts-contract.md, "Users' reports").
 */
export class InstanceLock {
  private tail: Promise<void> = Promise.resolve();
  private count = 0;

  /** Holders and waiters. */
  get load(): number {
    return this.count;
  }

  async run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    this.count++;
    const before = this.tail;
    let release = () => {};
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      await Promise.race([before, aborted(signal)]);
      return await work();
    } finally {
      this.count--;
      // A waiter that gives up still lets its successor go only once its predecessor is done.
      void before.then(release);
    }
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
