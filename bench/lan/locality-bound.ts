import { sum } from "../stats.js";

/**
 * The lower bound of issue 14's "fleet with locality": no placement of these tasks that uses the
 * machines the way this run did can finish before it. Pure, so the bench's arithmetic can be read
 * (and checked) apart from the run that feeds it.
 */

export interface MachineLoad {
  readonly name: string;
  readonly capacity: number;
  /** Σ engine seconds of the tasks it ran (journal, started → finished). */
  readonly engineSeconds: number;
  /** Distinct templates among its tasks: each had to cross its link once. */
  readonly templates: number;
}

export interface LocalityBound {
  /** Σ engine seconds ÷ Σ slots: every slot busy from the start to the end. */
  readonly computeSec: number;
  /** Σ first transfers × template size ÷ link rate: all of them leave the gateway over one link. */
  readonly gatewayLinkSec: number;
  /** max over machines of max(one transfer + engine seconds ÷ capacity, its first transfers ÷ link rate). */
  readonly machineSec: number;
  readonly machine: string;
  readonly boundSec: number;
}

/**
 * `templateBytes` each, over links of `mbit`. A machine runs nothing before its first template has
 * arrived, so that transfer is in series with its work; the later ones may cross while it works
 * (the gateway sends a waiting task's inputs ahead: input-prefetch.ts), so they count only
 * as what its own link must carry.
 */
export function localityBound(
  machines: readonly MachineLoad[],
  templateBytes: number,
  mbit: number,
): LocalityBound {
  const transferSec = (templateBytes * 8) / (mbit * 1e6);
  const slots = sum(machines.map((m) => m.capacity));
  const computeSec = sum(machines.map((m) => m.engineSeconds)) / slots;
  const gatewayLinkSec = sum(machines.map((m) => m.templates)) * transferSec;
  let machineSec = 0;
  let machine = "";
  for (const m of machines) {
    const sec = Math.max(
      (m.templates > 0 ? transferSec : 0) + m.engineSeconds / m.capacity,
      m.templates * transferSec,
    );
    if (sec > machineSec) {
      machineSec = sec;
      machine = m.name;
    }
  }
  return {
    computeSec,
    gatewayLinkSec,
    machineSec,
    machine,
    boundSec: Math.max(computeSec, gatewayLinkSec, machineSec),
  };
}

/**
 * `tasks` spread over `kinds` by Zipf's law with exponent 1 (the k-th most used gets a share
 * ∝ 1/k), rounded by largest remainder so the counts add up to `tasks`.
 */
export function zipfCounts(tasks: number, kinds: number): number[] {
  const weights = Array.from({ length: kinds }, (_, k) => 1 / (k + 1));
  const total = sum(weights);
  const exact = weights.map((w) => (tasks * w) / total);
  const counts = exact.map(Math.floor);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (let left = tasks - sum(counts), j = 0; left > 0; left--, j++) {
    const i = order[j % order.length]?.[1] ?? 0;
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return counts;
}
