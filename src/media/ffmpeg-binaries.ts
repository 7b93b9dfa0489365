import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, chmod, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { delimiter, join } from "node:path";
import { errorMessage } from "../errors.js";

export type MediaTool = "ffmpeg" | "ffprobe";

export interface BinaryLookupOptions {
  /** Where `FFMPEG_PATH`, `FFPROBE_PATH` and `PATH` are read from; the one place this module reads the environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** Path of the binary shipped in the npm package; tests replace it, it may throw when npm skipped the package. */
  readonly packagePath?: (tool: MediaTool) => string;
}

/** No usable ffmpeg/ffprobe anywhere we looked; the message lists every place tried and why it failed. */
export class BinaryNotFoundError extends Error {
  readonly code = "MEDIA_TOOL_NOT_FOUND";

  constructor(
    readonly tool: MediaTool,
    readonly tried: readonly string[],
  ) {
    super(
      `no usable ${tool} found; tried:\n  - ${tried.join("\n  - ")}\n` +
        `install ${tool}, or set ${ENV_VARS[tool]} to its path`,
    );
    this.name = "BinaryNotFoundError";
  }
}

const ENV_VARS: Record<MediaTool, string> = { ffmpeg: "FFMPEG_PATH", ffprobe: "FFPROBE_PATH" };
const PACKAGES: Record<MediaTool, string> = {
  ffmpeg: "@ffmpeg-installer/ffmpeg",
  ffprobe: "@ffprobe-installer/ffprobe",
};

const requireFromHere = createRequire(import.meta.url);

/** The binary shipped in the npm package (a static build); throws when npm skipped the package. */
export function npmPackagePath(tool: MediaTool): string {
  const mod: unknown = requireFromHere(PACKAGES[tool]);
  const path = (mod as { path?: unknown } | null)?.path;
  if (typeof path !== "string" || path === "") throw new Error(`${PACKAGES[tool]} exported no path`);
  return path;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves a binary in this order: the environment variable (an explicit choice, so a wrong value is
 * an error rather than a silent fall-through), then `PATH` (a system ffmpeg is usually newer and
 * better maintained), then the npm package.
 */
export async function findBinary(tool: MediaTool, options: BinaryLookupOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const fromEnv = env[ENV_VARS[tool]];
  if (fromEnv !== undefined && fromEnv !== "") {
    if (await isExecutableFile(fromEnv)) return fromEnv;
    throw new BinaryNotFoundError(tool, [`${ENV_VARS[tool]}=${fromEnv}: not an executable file`]);
  }

  const tried: string[] = [`${ENV_VARS[tool]}: not set`];
  const exe = process.platform === "win32" ? `${tool}.exe` : tool;
  const dirs = (env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  for (const dir of dirs) {
    const candidate = join(dir, exe);
    if (await isExecutableFile(candidate)) return candidate;
  }
  tried.push(dirs.length > 0 ? `${exe} on PATH: not found in ${dirs.length} directories` : "PATH: empty");

  let packaged: string;
  try {
    packaged = (options.packagePath ?? npmPackagePath)(tool);
  } catch (err) {
    // The installer packages throw (sometimes a bare string) when npm skipped the optional
    // platform package, e.g. on an unsupported OS/arch or with --no-optional.
    tried.push(`npm package ${PACKAGES[tool]}: ${errorMessage(err)}`);
    throw new BinaryNotFoundError(tool, tried);
  }
  try {
    await ensureExecutable(packaged);
    return packaged;
  } catch (err) {
    tried.push(`npm package ${PACKAGES[tool]} at ${packaged}: ${errorMessage(err)}`);
    throw new BinaryNotFoundError(tool, tried);
  }
}

/**
 * The installer packages make their binary executable in a `postinstall` script, which
 * `npm install --ignore-scripts` (common in CI and Docker builds) skips, leaving a 0644 file.
 */
export async function ensureExecutable(path: string): Promise<void> {
  if (!(await stat(path)).isFile()) throw new Error("not a file");
  try {
    await access(path, constants.X_OK);
    return;
  } catch {
    // Not executable for us: fix it below.
  }
  try {
    await chmod(path, 0o755);
  } catch (err) {
    throw new Error(`not executable and chmod failed (${errorMessage(err)}); run: chmod +x ${path}`);
  }
  await access(path, constants.X_OK);
}

const cache = new Map<MediaTool, Promise<string>>();

function cached(tool: MediaTool): Promise<string> {
  let found = cache.get(tool);
  if (!found) {
    // A failure is not cached: the operator may install ffmpeg and retry without a restart.
    found = findBinary(tool).catch((err: unknown) => {
      cache.delete(tool);
      throw err;
    });
    cache.set(tool, found);
  }
  return found;
}

/** The ffmpeg to run. Cached for the life of the process unless `options` are given. */
export function ffmpegPath(options?: BinaryLookupOptions): Promise<string> {
  return options ? findBinary("ffmpeg", options) : cached("ffmpeg");
}

/** The ffprobe to run. Cached for the life of the process unless `options` are given. */
export function ffprobePath(options?: BinaryLookupOptions): Promise<string> {
  return options ? findBinary("ffprobe", options) : cached("ffprobe");
}

export interface MediaToolInfo {
  readonly path: string;
  /** As the binary states it, with its copyright year: static builds print only a git id. */
  readonly version: string;
}

const VERSION_TIMEOUT_MS = 10_000;

/** Which binary runs and what version it is, for the start-up log; `undefined` when none is found. */
export async function describeMediaTool(tool: MediaTool): Promise<MediaToolInfo | undefined> {
  let path: string;
  try {
    path = await cached(tool);
  } catch {
    return undefined;
  }
  const banner = await new Promise<string>((resolve) => {
    execFile(path, ["-version"], { timeout: VERSION_TIMEOUT_MS, killSignal: "SIGKILL" }, (_err, out) =>
      resolve(typeof out === "string" ? out : ""),
    );
  });
  return { path, version: parseVersionBanner(banner) };
}

/** "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 …" → "5.1.9-0+deb12u1 (2026)". */
export function parseVersionBanner(banner: string): string {
  const first = banner.split("\n", 1)[0] ?? "";
  const version = /version (\S+)/.exec(first)?.[1];
  const year = /Copyright \(c\) \d{4}-(\d{4})/.exec(first)?.[1];
  if (!version) return "unknown";
  return year ? `${version} (${year})` : version;
}
