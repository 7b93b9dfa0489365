/**
 * The command engine's template (issue 3): a command line such as
 * `python infer.py --audio {audio} --out {output}` split into argv once, at start-up, with
 * shell-like quoting, and rendered per job by putting file names into argv elements. No shell ever
 * runs it, so a file name is never parsed: whatever characters it holds, it stays one argument.
 */

export const PLACEHOLDERS = ["audio", "video", "output", "workdir", "job_id", "audio_duration"] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** One argv element: literal text and placeholders, joined when rendered. */
export type TemplateWord = readonly (string | { readonly placeholder: Placeholder })[];

export interface CommandTemplate {
  /** The template as the user wrote it, for logs and messages. */
  readonly source: string;
  /** argv[0] first; it never holds a placeholder. */
  readonly words: readonly TemplateWord[];
  readonly placeholders: ReadonlySet<Placeholder>;
}

/** The template cannot be used; the message says where and what to write instead. */
export class CommandTemplateError extends Error {
  readonly code = "COMMAND_TEMPLATE_INVALID";

  constructor(message: string) {
    super(message);
    this.name = "CommandTemplateError";
  }
}

/**
 * Characters a shell would act on. Unquoted, they are refused rather than passed on, since a user
 * who writes `… > log.txt` or `$HOME/model.pth` expects a shell and would otherwise get a script
 * failing at its first job with a baffling argument error. Quoted or escaped, they are literal.
 */
const SHELL_ONLY = new Set(["|", "&", ";", "<", ">", "`", "$"]);
const SPACE = /\s/;

/** Splits `source` into words the way sh would (no expansions), then finds the placeholders. */
export function parseCommandTemplate(source: string): CommandTemplate {
  const rawWords = splitWords(source);
  if (rawWords.length === 0) throw new CommandTemplateError("the command is empty");
  const words = rawWords.map((text, index) => parseWord(text, index));
  const placeholders = new Set<Placeholder>();
  for (const word of words) {
    for (const part of word) if (typeof part !== "string") placeholders.add(part.placeholder);
  }
  const program = words[0] ?? [];
  if (program.some((part) => typeof part !== "string")) {
    // It would run a file a client uploaded.
    throw new CommandTemplateError("the program (the first word) cannot contain a placeholder");
  }
  if (!placeholders.has("output")) {
    throw new CommandTemplateError("the command must contain {output}, the path where it writes the MP4");
  }
  return Object.freeze({ source, words: Object.freeze(words), placeholders });
}

/** Words after quote removal; `undefined` between words, so `''` still makes an empty argument. */
function splitWords(source: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  const push = (ch: string): void => {
    word = (word ?? "") + ch;
  };
  let i = 0;
  while (i < source.length) {
    const ch = source[i] ?? "";
    if (SPACE.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
      i += 1;
    } else if (ch === "'") {
      const end = source.indexOf("'", i + 1);
      if (end < 0) throw new CommandTemplateError(`unclosed ' opened at character ${i + 1}`);
      word = (word ?? "") + source.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      word ??= "";
      i = readDoubleQuoted(source, i, push);
    } else if (ch === "\\") {
      const next = source[i + 1];
      if (next === undefined) throw new CommandTemplateError("the command ends with a lone backslash");
      // Backslash-newline continues the line, as in a shell script.
      if (next !== "\n") push(next);
      i += 2;
    } else if (SHELL_ONLY.has(ch)) {
      throw new CommandTemplateError(
        `"${ch}" at character ${i + 1} means something to a shell, but the command runs without one; ` +
          `quote it ('${ch}') to pass it as it is, or run a shell yourself: sh -c '…' sh {audio} {video} {output}`,
      );
    } else if (ch === "~" && word === undefined) {
      throw new CommandTemplateError(
        `"~" at character ${i + 1} is not expanded (no shell runs the command); write the full path`,
      );
    } else {
      push(ch);
      i += 1;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** POSIX double quotes without expansions: a backslash escapes only `"`, `\`, `$`, `` ` `` and a newline. */
function readDoubleQuoted(source: string, open: number, push: (ch: string) => void): number {
  let i = open + 1;
  for (;;) {
    const ch = source[i];
    if (ch === undefined) throw new CommandTemplateError(`unclosed " opened at character ${open + 1}`);
    if (ch === '"') return i + 1;
    if (ch === "\\") {
      const next = source[i + 1];
      if (next === '"' || next === "\\" || next === "$" || next === "`") {
        push(next);
        i += 2;
        continue;
      }
      if (next === "\n") {
        i += 2;
        continue;
      }
    }
    push(ch);
    i += 1;
  }
}

/**
 * `{name}` is a placeholder wherever it stands, quoted or not (quotes only group words here);
 * `{{` and `}}` are literal braces, as in Python's str.format.
 */
function parseWord(text: string, index: number): TemplateWord {
  const parts: (string | { placeholder: Placeholder })[] = [];
  let literal = "";
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    const next = text[i + 1];
    if ((ch === "{" && next === "{") || (ch === "}" && next === "}")) {
      literal += ch;
      i += 2;
    } else if (ch === "{") {
      const close = text.indexOf("}", i + 1);
      if (close < 0) throw braceError(`"{" without a closing "}" in word ${index + 1} (${text})`);
      const name = text.slice(i + 1, close);
      if (!isPlaceholder(name)) {
        throw braceError(
          `unknown placeholder {${name}}; known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(", ")}`,
        );
      }
      if (literal) parts.push(literal);
      literal = "";
      parts.push({ placeholder: name });
      i = close + 1;
    } else if (ch === "}") {
      throw braceError(`"}" without an opening "{" in word ${index + 1} (${text})`);
    } else {
      literal += ch;
      i += 1;
    }
  }
  if (literal || parts.length === 0) parts.push(literal);
  return Object.freeze(parts);
}

function braceError(problem: string): CommandTemplateError {
  return new CommandTemplateError(`${problem}; write {{ and }} for literal braces`);
}

function isPlaceholder(name: string): name is Placeholder {
  return (PLACEHOLDERS as readonly string[]).includes(name);
}

/**
 * argv for one job. Each value lands inside its own argv element as it is: a name with spaces,
 * quotes or `$(…)` is still one argument, and nothing interprets it.
 */
export function renderCommand(
  template: CommandTemplate,
  values: Readonly<Partial<Record<Placeholder, string>>>,
): string[] {
  return template.words.map((word) =>
    word
      .map((part) => {
        if (typeof part === "string") return part;
        const value = values[part.placeholder];
        if (value === undefined) throw new Error(`no value for {${part.placeholder}}`);
        return value;
      })
      .join(""),
  );
}

/** argv[0], which holds no placeholder. */
export function programOf(template: CommandTemplate): string {
  return (template.words[0] ?? []).map((part) => (typeof part === "string" ? part : "")).join("");
}

/** The same template with argv[0] replaced, e.g. by the absolute path found at start-up. */
export function withProgram(template: CommandTemplate, program: string): CommandTemplate {
  return Object.freeze({ ...template, words: Object.freeze([[program], ...template.words.slice(1)]) });
}
