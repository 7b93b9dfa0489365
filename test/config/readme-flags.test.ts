import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GATEWAY_OPTIONS } from "../../src/config/gateway-options.js";
import { type OptionSpec, type OptionTable, shownDefault } from "../../src/config/options.js";
import { WORKER_OPTIONS } from "../../src/config/worker-options.js";

/**
 * The README's flag tables are what users read; they are held to the options tables both ways:
 * every flag of a command is in a README table of that command with the same default (as
 * `shownDefault` words it), environment variable and worker.json key, and every flag there exists.
 */

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** Which command the flag tables under each `## ` section describe. */
const SECTIONS: Record<string, "gateway" | "worker"> = {
  Configuration: "gateway",
  "Running a worker on a GPU machine": "worker",
  "HeyGem machines": "worker",
};
const TABLES: Record<"gateway" | "worker", OptionTable> = {
  gateway: GATEWAY_OPTIONS,
  worker: WORKER_OPTIONS,
};

interface FlagRow {
  readonly section: string;
  /** As written, for messages. */
  readonly text: string;
  readonly flags: readonly string[];
  /** From `(`ENV`, …)` after the flags; undefined when the row names none. */
  readonly envs: readonly string[] | undefined;
  readonly defaults: readonly string[];
  /** undefined when the table has no worker.json column. */
  readonly fileKeys: readonly string[] | undefined;
}

/** Every row of every table whose first header cell starts with "flag", outside code blocks. */
function flagRows(markdown: string): FlagRow[] {
  const rows: FlagRow[] = [];
  let section = "";
  let inCode = false;
  let header: string[] | undefined;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) inCode = !inCode;
    if (inCode) continue;
    if (line.startsWith("## ")) section = line.slice(3).trim();
    if (!line.startsWith("|")) {
      header = undefined;
      continue;
    }
    const cells = line
      .slice(1, line.lastIndexOf("|"))
      .split("|")
      .map((cell) => cell.trim());
    if (header === undefined) {
      header = cells;
      continue;
    }
    if (!header[0]?.startsWith("flag") || /^-+$/.test(cells[0] ?? "")) continue;
    rows.push(parseRow(section, line, header, cells));
  }
  return rows;
}

function parseRow(section: string, text: string, header: string[], cells: string[]): FlagRow {
  const [flagCell = ""] = cells;
  const paren = flagCell.indexOf("(");
  const flags = literals(paren < 0 ? flagCell : flagCell.slice(0, paren)).map(
    (flag) => flag.split(" ")[0] ?? "",
  );
  const envs =
    paren < 0 ? [] : literals(flagCell.slice(paren)).filter((name) => /^[A-Z][A-Z0-9_]*$/.test(name));
  const defaultCell = cells[header.indexOf("default")] ?? "";
  const fileColumn = header.findIndex((title) => title.includes("worker.json"));
  // "`heygem.` key in worker.json": the column's keys sit in that section.
  const prefix = fileColumn < 0 ? "" : (literals(header[fileColumn] ?? "")[0] ?? "");
  const fileCell = fileColumn < 0 ? undefined : (cells[fileColumn] ?? "");
  return {
    section,
    text,
    flags,
    envs: envs.length > 0 ? envs : undefined,
    defaults: defaultCell === "" ? flags.map(() => "") : topLevelParts(defaultCell),
    fileKeys:
      fileCell === undefined
        ? undefined
        : fileCell === ""
          ? flags.map(() => "")
          : literals(fileCell.split("(")[0] ?? "").map((key) => `${prefix}${key}`),
  };
}

/** The `backticked` parts of a cell. */
function literals(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "");
}

/** "`1000` ms, `2000` ms (2 s)" → one part per flag; commas inside backticks or parentheses stay. */
function topLevelParts(cell: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let part = "";
  for (let i = 0; i < cell.length; i++) {
    const c = cell[i];
    if (c === "`") quoted = !quoted;
    else if (!quoted && c === "(") depth++;
    else if (!quoted && c === ")") depth--;
    if (!quoted && depth === 0 && c === "," && cell[i + 1] === " ") {
      parts.push(part.trim());
      part = "";
      i++;
      continue;
    }
    part += c;
  }
  parts.push(part.trim());
  return parts;
}

/** `--heygem-poll-interval` → `HEYGEM_POLL_INTERVAL`, what the README promises where it shows none. */
function envOfFlag(flag: string): string {
  return flag.slice(2).replaceAll("-", "_").toUpperCase();
}

const ROWS = flagRows(README);

describe("README flag tables", () => {
  it("are found, each under a section that names its command", () => {
    expect(ROWS.length).toBeGreaterThan(20);
    for (const row of ROWS) expect(Object.keys(SECTIONS), row.text).toContain(row.section);
  });

  it.each(Object.entries(TABLES))(
    "%s: every flag of the options table is in the README",
    (command, table) => {
      const documented = new Set(
        ROWS.filter((row) => SECTIONS[row.section] === command).flatMap((r) => r.flags),
      );
      const missing = Object.values(table)
        .map((spec) => spec.flag)
        .filter((flag) => !documented.has(flag));
      expect(missing).toEqual([]);
    },
  );

  it.each(Object.entries(TABLES))("%s: every README row agrees with the options table", (command, table) => {
    const byFlag = new Map<string, OptionSpec>(Object.values(table).map((spec) => [spec.flag, spec]));
    for (const row of ROWS.filter((r) => SECTIONS[r.section] === command)) {
      // A row such as "`--heygem-…` timers" points at the table that lists them.
      if (row.flags.some((flag) => flag.endsWith("…"))) continue;
      expect.soft(row.defaults, `one default per flag: ${row.text}`).toHaveLength(row.flags.length);
      if (row.envs)
        expect.soft(row.envs, `one variable per flag: ${row.text}`).toHaveLength(row.flags.length);
      if (row.fileKeys)
        expect.soft(row.fileKeys, `one worker.json key per flag: ${row.text}`).toHaveLength(row.flags.length);
      row.flags.forEach((flag, i) => {
        const spec = byFlag.get(flag);
        expect.soft(spec, `${flag} is not a ${command} option: ${row.text}`).toBeDefined();
        if (!spec) return;
        expect.soft(row.defaults[i], `default of ${flag}`).toBe(shownDefault(spec));
        expect.soft(row.envs?.[i] ?? envOfFlag(flag), `environment variable of ${flag}`).toBe(spec.env);
        if (row.fileKeys)
          expect.soft(row.fileKeys[i] || undefined, `worker.json key of ${flag}`).toBe(spec.file);
      });
    }
  });

  it("show every worker.json key beside its flag", () => {
    const shown = new Set(ROWS.flatMap((row) => row.fileKeys ?? []));
    const missing = Object.values(WORKER_OPTIONS)
      .flatMap((spec) => (spec.file === undefined ? [] : [spec.file]))
      .filter((key) => !shown.has(key));
    expect(missing).toEqual([]);
  });
});
