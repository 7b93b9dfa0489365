/**
 * Columns of text aligned for a terminal. Chinese characters take two columns there, so widths
 * are counted the way a terminal draws them, not in UTF-16 units; otherwise the Chinese headers
 * would push every row out of line.
 */

// East Asian Wide and Fullwidth ranges (Unicode TR 11) that our text can contain.
const WIDE =
  /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u;

export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += WIDE.test(ch) ? 2 : 1;
  return width;
}

/** Cuts `text` to at most `width` columns, marking the cut with an ellipsis. */
export function fitWidth(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  let out = "";
  let used = 0;
  for (const ch of text) {
    const w = WIDE.test(ch) ? 2 : 1;
    if (used + w > width - 1) break;
    out += ch;
    used += w;
  }
  return `${out}…`;
}

function pad(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - displayWidth(text)));
}

/**
 * Rows under a header (none for a list of fields), columns two spaces apart; line breaks in cells
 * become spaces, so that one row stays one line.
 */
export function table(header: readonly string[] | null, rows: readonly (readonly string[])[]): string {
  const all = header ? [header, ...rows] : rows;
  const clean = all.map((row) => row.map((cell) => cell.replace(/\s*[\r\n]+\s*/g, " ")));
  const columns = Math.max(0, ...clean.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, i) =>
    Math.max(...clean.map((row) => displayWidth(row[i] ?? ""))),
  );
  return clean
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : pad(cell, widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}
