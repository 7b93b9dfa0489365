/** mulberry32: a tiny seeded PRNG, so every run draws the same workload. Values in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Nearest-rank percentile (p in 0–100) of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((s, v) => s + v, 0) / values.length;
}

export function sum(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0);
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Megabytes of 10^6 bytes, the unit of every size in the report. */
export const MB = 1_000_000;

export function mb(bytes: number): number {
  return round(bytes / MB, 1);
}

/**
 * Ordinary least squares with an intercept: the coefficients [a, b₁, …, bₖ] of
 * y ≈ a + b₁·x₁ + … + bₖ·xₖ, one row of `xs` per observation. NaN when the regressors do not
 * tell their effects apart (too few rows, or one a multiple of another).
 */
export function linearFit(xs: ReadonlyArray<readonly number[]>, ys: readonly number[]): number[] {
  const k = (xs[0]?.length ?? 0) + 1;
  const w = k + 1;
  // The normal equations (XᵀX)β = Xᵀy as one k × (k + 1) matrix, row-major.
  const m = new Array<number>(k * w).fill(0);
  const at = (r: number, c: number) => m[r * w + c] ?? 0;
  const put = (r: number, c: number, v: number) => {
    m[r * w + c] = v;
  };
  xs.forEach((row, n) => {
    const x = [1, ...row];
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) put(i, j, at(i, j) + (x[i] ?? 0) * (x[j] ?? 0));
      put(i, k, at(i, k) + (x[i] ?? 0) * (ys[n] ?? 0));
    }
  });
  // Gauss–Jordan elimination with partial pivoting.
  for (let col = 0; col < k; col++) {
    let pivot = col;
    for (let r = col + 1; r < k; r++) if (Math.abs(at(r, col)) > Math.abs(at(pivot, col))) pivot = r;
    for (let c = 0; c < w; c++) {
      const v = at(col, c);
      put(col, c, at(pivot, c));
      put(pivot, c, v);
    }
    const p = at(col, col);
    if (Math.abs(p) < 1e-12) return new Array<number>(k).fill(Number.NaN);
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = at(r, col) / p;
      for (let c = col; c < w; c++) put(r, c, at(r, c) - f * at(col, c));
    }
  }
  return Array.from({ length: k }, (_, i) => at(i, k) / at(i, i));
}
