import { dirname, resolve } from "node:path";
import { type TSchema, Type } from "@sinclair/typebox";
import { ConfigError } from "../errors.js";

/**
 * The command-line options, each declared once (gateway-options.ts, worker-options.ts): its flag,
 * environment variable, default, value type and worker.json key. The CLI builds its flags and their
 * help from these tables, the resolvers read every value through `readSettings`, and a test holds
 * the README's flag tables to them, so a default cannot differ between the three.
 */

/** Every option's environment variable is this prefix plus the option's `env`. */
export const ENV_PREFIX = "MULTI_HEYGEM_";

/** What an option's value may be, and how it is read and shown. */
export interface ValueType<T> {
  /** Completes `"x" is not …`: "an integer ≥ 1". */
  readonly expected: string;
  /** The value's JSON type in worker.json; without it the resolver reads the option's key itself. */
  readonly json?: TSchema;
  /** The only values allowed, for `--help`. */
  readonly choices?: readonly string[];
  /** Shown after the default ("ms"). */
  readonly unit?: string;
  /** A value never repeated in messages (a signing secret): errors say what was expected only. */
  readonly secret?: true;
  /** Relative paths count from where the value was written (the cwd, or the settings file's folder). */
  readonly isPath?: true;
  /** Text from a flag or an environment variable; undefined when it is not such a value. */
  parse(text: string): T | undefined;
  /** A value from a settings file, or a switch's or a repeated flag's value from commander. */
  check(value: unknown): T | undefined;
  /** The value as a user would write it. */
  show(value: T): string;
  /** A gloss on a shown default ("10 min"). */
  note?(value: T): string | undefined;
}

export interface OptionSpec<T = unknown, D extends T | undefined = T | undefined> {
  readonly flag: `--${string}`;
  /** The value's name in `--help` ("<ms>"); absent for a switch. */
  readonly value?: `<${string}>`;
  /** Without the `MULTI_HEYGEM_` prefix. */
  readonly env: string;
  readonly type: ValueType<T>;
  readonly default: D;
  /** Shown instead of a default that depends on something else; backticks mark literal values. */
  readonly defaultText?: string;
  /** The key in worker.json (`heygem.poll_interval_ms`), where the option has one. */
  readonly file?: string;
  readonly description: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

type WithoutDefault<T> = Omit<OptionSpec<T>, "default">;

/** Declares an option; its type's T is taken from `type`, which the default must then fit. */
export function option<T>(spec: WithoutDefault<T> & { readonly default: NoInfer<T> }): OptionSpec<T, T>;
export function option<T>(
  spec: WithoutDefault<T> & { readonly default?: undefined },
): OptionSpec<T, undefined>;
export function option<T>(spec: WithoutDefault<T> & { readonly default?: T }): OptionSpec<T> {
  return Object.freeze({ ...spec, default: spec.default });
}

/** The options' values as commander hands them over: text, a switch's true, a repeated flag's list. */
export type RawFlags<Table extends OptionTable> = {
  [K in keyof Table]?: Table[K] extends OptionSpec<boolean, infer _D>
    ? boolean
    : Table[K] extends OptionSpec<readonly string[], infer _D>
      ? string[]
      : string;
};

/** Every option's value: given, or from the file, or its default (undefined when it has none). */
export type Settings<Table extends OptionTable> = {
  readonly [K in keyof Table]: Table[K] extends OptionSpec<infer T, infer D> ? T | D : never;
};

/** A parsed JSON settings file (worker.json) and where it is. */
export interface SettingsFile {
  readonly path: string;
  readonly values: unknown;
}

/**
 * Reads and checks every option of `table` (pg-boss's `attorney`: one place): a flag or its
 * environment variable wins over the settings file, which wins over the default. An empty value
 * counts as not given, so `MULTI_HEYGEM_PORT=` means the default. A bad value is a ConfigError
 * naming the flag (or the file and key), the value and what is allowed.
 */
export function readSettings<Table extends OptionTable>(
  table: Table,
  flags: RawFlags<Table>,
  where: { readonly cwd: string; readonly file?: SettingsFile | undefined },
): Settings<Table> {
  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table)) {
    values[key] = readSetting(spec, (flags as Record<string, unknown>)[key], where);
  }
  return Object.freeze(values) as Settings<Table>;
}

/** One option, as `readSettings` reads it. */
export function readSetting<T, D extends T | undefined>(
  spec: OptionSpec<T, D>,
  raw: unknown,
  where: { readonly cwd: string; readonly file?: SettingsFile | undefined },
): T | D {
  const given = flagValue(spec, raw);
  if (given !== undefined) return inPlace(spec, given, where.cwd);
  const file = where.file;
  const inFile = file ? fileValue(spec, file) : undefined;
  if (file && inFile !== undefined) return inPlace(spec, inFile, dirname(file.path));
  return spec.default === undefined ? spec.default : inPlace(spec, spec.default, where.cwd);
}

function flagValue<T>(spec: OptionSpec<T>, raw: unknown): T | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === "string") {
    if (raw.trim() === "") return undefined;
    const value = spec.type.parse(raw);
    if (value === undefined) {
      const shown = spec.type.secret ? "the value" : `"${raw}"`;
      throw new ConfigError(spec.flag, "", `${shown} is not ${spec.type.expected}`);
    }
    return value;
  }
  const value = spec.type.check(raw);
  if (value === undefined) {
    throw new ConfigError(spec.flag, "", `${JSON.stringify(raw)} is not ${spec.type.expected}`);
  }
  return value;
}

function fileValue<T>(spec: OptionSpec<T>, file: SettingsFile): T | undefined {
  if (spec.file === undefined || spec.type.json === undefined) return undefined;
  let value: unknown = file.values;
  for (const part of spec.file.split(".")) {
    value =
      typeof value === "object" && value !== null ? (value as Record<string, unknown>)[part] : undefined;
  }
  if (value === undefined || value === "") return undefined;
  const checked = spec.type.check(value);
  if (checked === undefined) {
    throw new ConfigError(file.path, spec.file, `${JSON.stringify(value)} is not ${spec.type.expected}`);
  }
  return checked;
}

function inPlace<T>(spec: OptionSpec<T>, value: T, base: string): T {
  return spec.type.isPath && typeof value === "string" ? (resolve(base, value) as T) : value;
}

/**
 * The worker.json properties of the options whose key sits in `section` (top level when omitted),
 * each optional and of its value's JSON type; limits are checked by `readSettings`, which words
 * them as the flags' messages do.
 */
export function fileProperties(table: OptionTable, section?: string): Record<string, TSchema> {
  const properties: Record<string, TSchema> = {};
  for (const spec of Object.values(table)) {
    if (spec.file === undefined || spec.type.json === undefined) continue;
    const at = spec.file.lastIndexOf(".");
    const [inSection, key] =
      at < 0 ? [undefined, spec.file] : [spec.file.slice(0, at), spec.file.slice(at + 1)];
    if (inSection === section) properties[key] = Type.Optional(spec.type.json);
  }
  return properties;
}

/**
 * The default as the README shows it: "`2000` ms", "`600000` ms (10 min)", or the option's
 * `defaultText`; "" when there is none.
 */
export function shownDefault(spec: OptionSpec): string {
  if (spec.defaultText !== undefined) return spec.defaultText;
  if (spec.default === undefined) return "";
  const unit = spec.type.unit ? ` ${spec.type.unit}` : "";
  const note = spec.type.note?.(spec.default);
  return `\`${spec.type.show(spec.default)}\`${unit}${note ? ` (${note})` : ""}`;
}

/** `--help`'s description: the option's, its choices, and its default. */
export function helpText(spec: OptionSpec, choices = spec.type.choices): string {
  const listed = choices ? `${spec.description}: ${choices.join(", ")}` : spec.description;
  const shown = shownDefault(spec)
    .replaceAll("`", "")
    .replace(/ \((.*)\)$/, " = $1");
  return shown === "" ? listed : `${listed} (default: ${shown})`;
}
