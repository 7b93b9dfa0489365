/**
 * Line charts as SVG, drawn by the bench itself (no plotting package: a few axes and polylines are
 * all RESULTS.md needs). Each series is a list of [x, y] points; axes start at 0 unless a value is
 * negative, so that slopes read as what they are.
 */
export interface Series {
  readonly name: string;
  readonly points: ReadonlyArray<readonly [number, number]>;
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** Draw the y axis on a log scale (growth curves over orders of magnitude). */
  readonly logX?: boolean;
}

/** A chart RESULTS.md shows: written as `file` beside it. */
export interface Plot {
  readonly file: string;
  readonly title: string;
  readonly svg: string;
}

const W = 720;
const H = 400;
const M = { left: 70, right: 170, top: 40, bottom: 55 };
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

const xmlText = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Round tick steps (1, 2, 5 × 10^n) covering [lo, hi] in about `count` steps. */
function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step / 1e6; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

const label = (v: number) =>
  Math.abs(v) >= 1e6
    ? `${Number((v / 1e6).toPrecision(3))}M`
    : Math.abs(v) >= 1e3
      ? `${Number((v / 1e3).toPrecision(3))}k`
      : `${Number(v.toPrecision(3))}`;

export function lineChart(chart: LineChart): string {
  const all = chart.series.flatMap((s) => s.points);
  const xs = all.map(([x]) => (chart.logX ? Math.log10(Math.max(x, 1)) : x));
  const ys = all.map(([, y]) => y);
  const xLo = Math.min(0, ...xs);
  const xHi = Math.max(xLo + 1e-9, ...xs);
  const yLo = Math.min(0, ...ys);
  const yHi = Math.max(yLo + 1e-9, ...ys) * 1.05;
  const px = (x: number) =>
    M.left + (((chart.logX ? Math.log10(Math.max(x, 1)) : x) - xLo) / (xHi - xLo)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - yLo) / (yHi - yLo)) * (H - M.top - M.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    // The accessible name of the chart, which screen readers announce (and viewers show on hover).
    `<title>${xmlText(chart.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - M.right / 2}" y="22" text-anchor="middle" font-size="15">${xmlText(chart.title)}</text>`,
  ];
  const xTicks = chart.logX
    ? ticks(xLo, xHi, Math.max(1, Math.ceil(xHi - xLo))).map((e) => 10 ** e)
    : ticks(xLo, xHi);
  for (const t of xTicks) {
    const x = px(t);
    parts.push(
      `<line x1="${x}" y1="${M.top}" x2="${x}" y2="${H - M.bottom}" stroke="#eee"/>`,
      `<text x="${x}" y="${H - M.bottom + 18}" text-anchor="middle">${label(t)}</text>`,
    );
  }
  for (const t of ticks(yLo, yHi)) {
    const y = py(t);
    parts.push(
      `<line x1="${M.left}" y1="${y}" x2="${W - M.right}" y2="${y}" stroke="#eee"/>`,
      `<text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${label(t)}</text>`,
    );
  }
  parts.push(
    `<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="black"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" stroke="black"/>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">${xmlText(chart.xLabel)}${chart.logX ? " (log scale)" : ""}</text>`,
    `<text x="16" y="${(M.top + H - M.bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(M.top + H - M.bottom) / 2})">${xmlText(chart.yLabel)}</text>`,
  );
  chart.series.forEach((series, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = series.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points}"/>`);
    for (const [x, y] of series.points.length <= 40 ? series.points : [])
      parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${colour}"/>`);
    const ly = M.top + 10 + i * 20;
    parts.push(
      `<line x1="${W - M.right + 12}" y1="${ly}" x2="${W - M.right + 32}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${W - M.right + 38}" y="${ly + 4}">${xmlText(series.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

/** The least-squares slope of `points` (y per unit of x): the soak's "no upward trend" figure. */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}
