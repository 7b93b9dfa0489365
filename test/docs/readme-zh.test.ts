import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/**
 * README.zh-CN.md is a translation of README.md (issue 11) and has to stay one while README.md
 * changes. Prose cannot be compared across languages, so what is compared is what a translation
 * must not change: the headings' levels and order, the code blocks (comments aside), the tables'
 * shapes, the flags of the flag tables, the link targets and the `inline code` of every section.
 * Sections are paired by position; each failure names the English section it is about.
 */

const EN_FILE = "README.md";
const ZH_FILE = "README.zh-CN.md";

interface CodeBlock {
  readonly info: string;
  readonly lines: readonly string[];
}

interface Section {
  /** The heading line as written, e.g. `## API keys`: what failure messages name. */
  readonly heading: string;
  readonly level: number;
  readonly title: string;
  readonly blocks: CodeBlock[];
  /** Each table as its rows of cells, the `| --- |` row left out. */
  readonly tables: string[][][];
  /** Everything outside code blocks. */
  prose: string;
}

function read(file: string): string {
  return readFileSync(new URL(`../../${file}`, import.meta.url), "utf8");
}

function sections(markdown: string): Section[] {
  const result: Section[] = [];
  let current: Section | undefined;
  let block: { info: string; lines: string[] } | undefined;
  let table: string[][] | undefined;
  for (const line of markdown.split("\n")) {
    if (block) {
      if (line.startsWith("```")) {
        current?.blocks.push(block);
        block = undefined;
      } else block.lines.push(line);
      continue;
    }
    if (line.startsWith("```")) {
      block = { info: line.slice(3).trim(), lines: [] };
      table = undefined;
      continue;
    }
    const heading = /^(#{1,6}) (.*)$/.exec(line);
    if (heading) {
      current = {
        heading: line,
        level: heading[1]?.length ?? 0,
        title: heading[2] ?? "",
        blocks: [],
        tables: [],
        prose: "",
      };
      result.push(current);
      table = undefined;
      continue;
    }
    if (!current) continue;
    current.prose += `${line}\n`;
    if (!line.startsWith("|")) {
      table = undefined;
      continue;
    }
    const cells = line
      .slice(1, line.lastIndexOf("|"))
      .split("|")
      .map((cell) => cell.trim());
    if (cells.every((cell) => /^:?-+:?$/.test(cell))) continue;
    if (!table) {
      table = [];
      current.tables.push(table);
    }
    table.push(cells);
  }
  return result;
}

/** A code block's lines as compared: comments may be translated, so they are left out. */
function codeLines(block: CodeBlock): string[] {
  return block.lines
    .filter((line) => !/^\s*(#|\/\/)/.test(line))
    .map((line) => line.replace(/\s+(#|\/\/)(\s.*)?$/, "").trimEnd());
}

/** GitHub's anchor for a heading (github-slugger): lower case, punctuation dropped, spaces → `-`. */
function anchors(all: readonly Section[]): string[] {
  const seen = new Map<string, number>();
  return all.map((section) => {
    const base = section.title
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replaceAll(" ", "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    return count === 0 ? base : `${base}-${count}`;
  });
}

function linkTargets(prose: string): string[] {
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? "");
}

/** The `inline code` spans, with any run of backticks as delimiter and line breaks as spaces. */
function inlineCode(prose: string): string[] {
  return [...prose.matchAll(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g)].map((m) => (m[2] ?? "").replace(/\s+/g, " "));
}

function flags(cell: string): string[] {
  return [...cell.matchAll(/--[a-z0-9][a-z0-9-]*/g)].map((m) => m[0]);
}

const EN = sections(read(EN_FILE));
const ZH = sections(read(ZH_FILE));
const EN_ANCHORS = anchors(EN);
const ZH_ANCHORS = anchors(ZH);

/** English and Chinese sections side by side, as far as both go (the headings test covers the rest). */
const PAIRS = EN.flatMap((en, i) => {
  const zh = ZH[i];
  return zh ? [{ en, zh, where: `section "${en.heading}" (heading ${i + 1})` }] : [];
});

describe("README.zh-CN.md keeps in step with README.md", () => {
  it("the parser finds the README's structure", () => {
    expect(EN.length).toBeGreaterThan(20);
    expect(EN.flatMap((s) => s.blocks).length).toBeGreaterThan(20);
    expect(EN.flatMap((s) => s.tables).length).toBeGreaterThan(5);
  });

  it("each links to the other at the top", () => {
    expect(read(EN_FILE).split("\n").slice(0, 10).join("\n")).toContain(`](${ZH_FILE})`);
    expect(read(ZH_FILE).split("\n").slice(0, 10).join("\n")).toContain(`](${EN_FILE})`);
  });

  it("has the same headings, level by level, in the same order", () => {
    const problems: string[] = [];
    for (let i = 0; i < Math.max(EN.length, ZH.length); i++) {
      const en = EN[i];
      const zh = ZH[i];
      if (en?.level === zh?.level) continue;
      problems.push(
        `heading ${i + 1}: ${EN_FILE} has ${en ? `"${en.heading}"` : "nothing"}, ${ZH_FILE} has ${zh ? `"${zh.heading}"` : "nothing"}`,
      );
      break;
    }
    expect(problems).toEqual([]);
  });

  it("has the same code blocks in each section (comments may differ)", () => {
    const problems: string[] = [];
    for (const { en, zh, where } of PAIRS) {
      if (en.blocks.length !== zh.blocks.length) {
        problems.push(
          `${where}: ${en.blocks.length} code blocks in ${EN_FILE}, ${zh.blocks.length} in ${ZH_FILE}`,
        );
        continue;
      }
      en.blocks.forEach((enBlock, b) => {
        const zhBlock = zh.blocks[b] as CodeBlock;
        const name = `${where}, code block ${b + 1} (${enBlock.info || "plain"})`;
        if (enBlock.info !== zhBlock.info) problems.push(`${name}: ${ZH_FILE} has \`\`\`${zhBlock.info}`);
        const enLines = codeLines(enBlock);
        const zhLines = codeLines(zhBlock);
        const line = enLines.findIndex((text, l) => text !== zhLines[l]);
        if (line >= 0)
          problems.push(`${name}: ${EN_FILE} "${enLines[line]}", ${ZH_FILE} "${zhLines[line] ?? ""}"`);
        else if (zhLines.length > enLines.length)
          problems.push(`${name}: ${ZH_FILE} has more: "${zhLines[enLines.length]}"`);
      });
    }
    expect(problems).toEqual([]);
  });

  it("has tables of the same shape (rows × columns) in each section", () => {
    const shape = (table: string[][]) => `${table.length} × ${table[0]?.length ?? 0}`;
    const problems: string[] = [];
    for (const { en, zh, where } of PAIRS) {
      const enShapes = en.tables.map(shape);
      const zhShapes = zh.tables.map(shape);
      if (enShapes.join(", ") !== zhShapes.join(", "))
        problems.push(
          `${where}: tables ${enShapes.join(", ") || "none"} in ${EN_FILE}, ${zhShapes.join(", ") || "none"} in ${ZH_FILE}`,
        );
    }
    expect(problems).toEqual([]);
  });

  it("lists every flag of README.md's flag tables, row by row", () => {
    const problems: string[] = [];
    let flagTables = 0;
    for (const { en, zh, where } of PAIRS) {
      en.tables.forEach((table, t) => {
        if (!table[0]?.[0]?.startsWith("flag")) return;
        flagTables++;
        table.slice(1).forEach((row, r) => {
          const enFlags = flags(row[0] ?? "").join(" ");
          const zhFlags = flags(zh.tables[t]?.[r + 1]?.[0] ?? "").join(" ");
          if (enFlags !== zhFlags)
            problems.push(
              `${where}, table ${t + 1}, row ${r + 1}: ${EN_FILE} ${enFlags}, ${ZH_FILE} ${zhFlags || "none"}`,
            );
        });
      });
    }
    expect(flagTables).toBeGreaterThanOrEqual(3);
    expect(problems).toEqual([]);
  });

  it("links to the same targets in each section; anchors lead to the translated headings", () => {
    const crossLinks = new Set([EN_FILE, ZH_FILE]);
    const problems: string[] = [];
    for (const { en, zh, where } of PAIRS) {
      const zhTargets = linkTargets(zh.prose);
      for (const target of linkTargets(en.prose)) {
        if (crossLinks.has(target)) continue;
        let expected = target;
        if (target.startsWith("#")) {
          const heading = EN_ANCHORS.indexOf(target.slice(1));
          if (heading < 0) {
            problems.push(`${where}: ${EN_FILE} links to ${target}, which is no heading of ${EN_FILE}`);
            continue;
          }
          expected = `#${ZH_ANCHORS[heading]}`;
        }
        if (!zhTargets.includes(expected))
          problems.push(`${where}: ${ZH_FILE} lacks the link to ${expected}`);
      }
      for (const target of zhTargets)
        if (target.startsWith("#") && !ZH_ANCHORS.includes(target.slice(1)))
          problems.push(`${where}: ${ZH_FILE} links to ${target}, which is no heading of ${ZH_FILE}`);
    }
    expect(problems).toEqual([]);
  });

  it("keeps every `inline code` of a section (routes, flags, codes, names)", () => {
    const problems: string[] = [];
    for (const { en, zh, where } of PAIRS) {
      const zhCode = new Set(inlineCode(zh.prose));
      const missing = [...new Set(inlineCode(en.prose))].filter((code) => !zhCode.has(code));
      if (missing.length > 0)
        problems.push(`${where}: ${ZH_FILE} lacks ${missing.map((c) => `\`${c}\``).join(", ")}`);
    }
    expect(problems).toEqual([]);
  });
});
