/**
 * How fast each machine renders, in engine seconds per second of audio, learned from its finished
 * jobs (an exponentially weighted mean, so a machine that slows down — thermal throttling, a
 * second user — is believed within a few jobs). Before a machine has finished anything, the
 * fleet's mean stands in for it, and before anyone has, `prior`.
 */
export class SpeedModel {
  private readonly speeds = new Map<string, { value: number; samples: number }>();

  constructor(
    private readonly prior = 1,
    private readonly weight = 0.3,
  ) {}

  /** Forgets every measurement (a gateway that begins dispatching reads them again from the store). */
  reset(): void {
    this.speeds.clear();
  }

  observe(machine: string, secondsPerAudioSecond: number): void {
    if (!Number.isFinite(secondsPerAudioSecond) || secondsPerAudioSecond <= 0) return;
    const known = this.speeds.get(machine);
    const value = known
      ? known.value + this.weight * (secondsPerAudioSecond - known.value)
      : secondsPerAudioSecond;
    this.speeds.set(machine, { value, samples: (known?.samples ?? 0) + 1 });
  }

  /** Engine seconds per audio second for `machine`: measured, else the fleet's mean, else the prior. */
  speed(machine: string): number {
    const known = this.speeds.get(machine);
    if (known) return known.value;
    if (this.speeds.size === 0) return this.prior;
    let sum = 0;
    for (const s of this.speeds.values()) sum += s.value;
    return sum / this.speeds.size;
  }

  /** undefined while nothing has been measured on `machine`. */
  measured(machine: string): { value: number; samples: number } | undefined {
    return this.speeds.get(machine);
  }
}
