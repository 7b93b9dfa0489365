import { type Figure, figure, type Measured, type Target } from "../report.js";

/**
 * What a LAN benchmark hands back when this machine cannot build the LAN (not root, no iproute2):
 * each of its figures as ERROR, and the reason as the first method line, so the rest of the run
 * goes on and RESULTS.md says plainly what is missing.
 */
export function notMeasured(
  reason: string,
  figures: ReadonlyArray<readonly [key: string, label: string, target?: Target]>,
): Measured {
  const errors: Figure[] = figures.map(([key, label, target]) => figure(key, label, Number.NaN, "×", target));
  return {
    figures: errors,
    tables: [],
    method: [`ERROR: not measured: this benchmark ${reason}.`],
    raw: { notMeasured: reason },
  };
}
