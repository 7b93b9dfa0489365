import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Scope } from "./harness.js";
import type { MediaKit } from "./media.js";
import type { Plot } from "./plot.js";

/** What every benchmark gets, and what it hands back. */
export interface BenchContext {
  readonly quick: boolean;
  readonly media: MediaKit;
  readonly scope: Scope;
  log(message: string): void;
}

export interface Benchmark {
  readonly name: string;
  readonly title: string;
  run(ctx: BenchContext): Promise<Measured>;
}

export type Verdict = "PASS" | "MISS" | "REPORT" | "ERROR";

export interface Target {
  readonly op: "<=" | "<" | ">=";
  readonly value: number;
}

export interface Figure {
  readonly key: string;
  readonly label: string;
  readonly value: number | null;
  readonly unit: string;
  readonly target?: Target;
  readonly verdict: Verdict;
}

export interface Table {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: ReadonlyArray<ReadonlyArray<string | number>>;
}

export interface Measured {
  readonly figures: Figure[];
  readonly tables: Table[];
  /** How it was measured, in a few sentences. */
  readonly method: string[];
  /** The numbers behind the figures, for results.json. */
  readonly raw: Record<string, unknown>;
  /** Charts (plot.ts), written beside RESULTS.md and shown in it. */
  readonly plots?: Plot[];
}

export interface Outcome extends Partial<Measured> {
  readonly name: string;
  readonly title: string;
  readonly seconds: number;
  readonly error?: string;
}

export function figure(key: string, label: string, value: number, unit: string, target?: Target): Figure {
  const ok = !Number.isFinite(value)
    ? false
    : target === undefined
      ? true
      : target.op === "<="
        ? value <= target.value
        : target.op === "<"
          ? value < target.value
          : value >= target.value;
  return {
    key,
    label,
    value: Number.isFinite(value) ? value : null,
    unit,
    ...(target ? { target } : {}),
    verdict: !Number.isFinite(value) ? "ERROR" : target === undefined ? "REPORT" : ok ? "PASS" : "MISS",
  };
}

export interface RunInfo {
  readonly date: string;
  readonly mode: "full" | "quick";
  readonly selected: readonly string[];
  readonly complete: boolean;
  readonly machine: {
    readonly cpu: string;
    readonly cores: number;
    readonly ramGiB: number;
    readonly os: string;
    /** 1-minute load average when the run started and ended: other work on the box skews figures. */
    readonly loadavg: readonly [number, number];
  };
  readonly node: string;
  /** The ffmpeg and ffprobe every child process picks by default, "version at path". */
  readonly mediaTools: { readonly ffmpeg: string; readonly ffprobe: string };
  readonly commit: string;
  readonly seconds: number;
}

const fmt = (v: number | null, unit: string) =>
  v === null
    ? "—"
    : `${Number.isInteger(v) ? v : v.toPrecision(4).replace(/\.?0+$/, "")}${unit ? ` ${unit}` : ""}`;

const targetText = (t: Target | undefined, unit: string) =>
  t ? `${t.op} ${fmt(t.value, unit)}` : "(report)";

/** A Markdown table with padded columns, readable as plain text too. */
function markdownTable(columns: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>) {
  const cells = [columns, ...rows].map((row) => row.map(String));
  const widths = columns.map((_, i) => Math.max(3, ...cells.map((row) => (row[i] ?? "").length)));
  const line = (row: readonly string[]) =>
    `| ${widths.map((w, i) => (row[i] ?? "").padEnd(w)).join(" | ")} |`;
  const [head = [], ...body] = cells;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function renderMarkdown(info: RunInfo, outcomes: readonly Outcome[]): string {
  const out: string[] = [];
  out.push("# Benchmark results (issues 5, 8, 13 and 14)", "");
  if (info.mode === "quick" || !info.complete) {
    out.push(
      `> **${info.mode === "quick" ? "Quick" : "Partial"} run** (${info.selected.join(", ")}): smaller sizes ` +
        "or a subset; not the figures of record.",
      "",
    );
  }
  out.push(
    `- Date: ${info.date}`,
    `- Machine: ${info.machine.cpu}, ${info.machine.cores} cores, ${info.machine.ramGiB} GiB RAM, ${info.machine.os}; ` +
      `1-min load average ${info.machine.loadavg[0]} at the start, ${info.machine.loadavg[1]} at the end`,
    `- Node ${info.node}; commit ${info.commit}`,
    `- ffmpeg ${info.mediaTools.ffmpeg}; ffprobe ${info.mediaTools.ffprobe} (the defaults every process picks; ` +
      "figures that compare builds name theirs)",
    `- Command: \`npm run bench${info.mode === "quick" ? " -- --quick" : ""}\`; took ${Math.round(info.seconds)} s`,
    "- Every figure is a ratio (or rate) whose parts were measured in the same run on this machine;",
    "  processes talk over 127.0.0.1, except where a section says it built a LAN of network namespaces.",
    "",
    "## Summary",
    "",
  );
  const rows: Array<Array<string | number>> = [];
  for (const o of outcomes) {
    if (o.error !== undefined) rows.push([o.title, "—", "—", "ERROR"]);
    for (const f of o.figures ?? [])
      rows.push([f.label, fmt(f.value, f.unit), targetText(f.target, f.unit), f.verdict]);
  }
  out.push(markdownTable(["figure", "measured", "target", "verdict"], rows), "");
  for (const [i, o] of outcomes.entries()) {
    out.push(`## ${i + 1}. ${o.title}`, "", `Took ${Math.round(o.seconds)} s.`, "");
    if (o.error !== undefined) out.push("**Failed:**", "", "```", o.error, "```", "");
    for (const t of o.tables ?? []) out.push(`**${t.title}**`, "", markdownTable(t.columns, t.rows), "");
    for (const p of o.plots ?? []) out.push(`![${p.title}](${p.file})`, "");
    if (o.method && o.method.length > 0) {
      out.push("Method:", "", ...o.method.map((m) => `- ${m}`), "");
    }
  }
  return `${out.join("\n").trimEnd()}\n`;
}

export async function writeResults(
  mdPath: string,
  jsonPath: string,
  info: RunInfo,
  outcomes: readonly Outcome[],
): Promise<void> {
  await writeFile(mdPath, renderMarkdown(info, outcomes));
  for (const o of outcomes)
    for (const p of o.plots ?? []) await writeFile(join(dirname(mdPath), p.file), p.svg);
  // The charts are files of their own; results.json names them.
  const json = outcomes.map(({ plots, ...o }) => (plots ? { ...o, plots: plots.map((p) => p.file) } : o));
  await writeFile(jsonPath, `${JSON.stringify({ run: info, benchmarks: json }, null, 2)}\n`);
}
