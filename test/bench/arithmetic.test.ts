import { describe, expect, it } from "vitest";
import { localityBound, zipfCounts } from "../../bench/lan/locality-bound.js";
import { lineChart, slope } from "../../bench/plot.js";
import { linearFit, percentile } from "../../bench/stats.js";

/**
 * The arithmetic behind bench/RESULTS.md's verdicts (issue 14), apart from the runs that feed it:
 * a wrong bound or percentile would pass or fail a target for no reason anyone could see.
 */
describe("bench arithmetic", () => {
  it("percentiles are nearest-rank, whatever the order of the values", () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it("a trend is the least-squares slope: exact on a line, flat on a constant, NaN on one point", () => {
    expect(slope([0, 1, 2, 3, 4].map((x) => [x, 2 * x + 1] as const))).toBeCloseTo(2, 12);
    expect(slope([0, 1, 2, 3].map((x) => [x, 5] as const))).toBe(0);
    // A saw of 10, 12, 10, … that ends on a high tooth leans a little: Σ(x−x̄)(y−ȳ) ÷ Σ(x−x̄)² = 3 ÷ 17.5.
    expect(slope([0, 1, 2, 3, 4, 5].map((x) => [x, x % 2 === 0 ? 10 : 12] as const))).toBeCloseTo(
      3 / 17.5,
      12,
    );
    expect(slope([[1, 1]])).toBeNaN();
  });

  it("a linear fit finds each regressor's own effect", () => {
    const xs = [
      [0, 0],
      [1, 0],
      [0, 1],
      [2, 3],
      [5, 1],
    ];
    const ys = xs.map(([a = 0, b = 0]) => 3 + 2 * a - b);
    const [intercept, first, second] = linearFit(xs, ys);
    expect(intercept).toBeCloseTo(3, 9);
    expect(first).toBeCloseTo(2, 9);
    expect(second).toBeCloseTo(-1, 9);
  });

  it("the locality bound is the largest of the compute, the gateway's link and the busiest machine", () => {
    // 100 MB over 1 Gbit/s: 0.8 s a template.
    const bound = localityBound(
      [
        { name: "a", capacity: 1, engineSeconds: 100, templates: 3 },
        { name: "b", capacity: 2, engineSeconds: 60, templates: 1 },
      ],
      100_000_000,
      1000,
    );
    expect(bound.computeSec).toBeCloseTo(160 / 3, 9);
    expect(bound.gatewayLinkSec).toBeCloseTo(3.2, 9);
    // "a": its first template (0.8 s) before any work, then 100 s; the other two cross meanwhile.
    expect(bound.machineSec).toBeCloseTo(100.8, 9);
    expect(bound.machine).toBe("a");
    expect(bound.boundSec).toBeCloseTo(100.8, 9);

    // Many templates over a slow link: the gateway's one link is what nothing can beat.
    const slow = localityBound(
      Array.from({ length: 8 }, (_, i) => ({ name: `m${i}`, capacity: 1, engineSeconds: 10, templates: 5 })),
      100_000_000,
      100,
    );
    expect(slow.gatewayLinkSec).toBeCloseTo(40 * 8, 9);
    expect(slow.boundSec).toBe(slow.gatewayLinkSec);
    // Each machine's own link: five templates of 8 s take longer than its first one and its work.
    expect(slow.machineSec).toBeCloseTo(40, 9);
  });

  it("Zipf counts add up, fall with rank, and give the largest remainders the rest", () => {
    // Shares 1 : 1/2 : 1/3 of 10 are 5.45, 2.73, 1.82: floors 5, 2, 1, and the two left over go
    // to the two largest remainders.
    expect(zipfCounts(10, 3)).toEqual([5, 3, 2]);
    const counts = zipfCounts(400, 20);
    expect(counts.reduce((s, n) => s + n, 0)).toBe(400);
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeLessThanOrEqual(counts[i - 1] ?? 0);
    // 400 ÷ H(20) = 111.2 for the first.
    expect(counts[0]).toBe(111);
  });

  it("a chart is well-formed SVG with one line and one legend entry per series, names escaped", () => {
    const svg = lineChart({
      title: "RSS <after> GC",
      xLabel: "tasks",
      yLabel: "MB",
      series: [
        {
          name: "a & b",
          points: [
            [0, 1],
            [1000, 2],
            [2000, 3],
          ],
        },
        {
          name: "c",
          points: [
            [0, 4],
            [1000, 4],
          ],
        },
      ],
    });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("<title>RSS &lt;after&gt; GC</title>");
    expect(svg).toContain("a &amp; b");
    expect(svg).not.toMatch(/<after>|a & b/);
    expect(svg.match(/<polyline /g)).toHaveLength(2);
  });
});
