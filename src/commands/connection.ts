import { type Command, Option } from "commander";
import { ApiError } from "../client/api-error.js";
import { Client } from "../client/client.js";
import type { Messages } from "./messages.js";

export const DEFAULT_URL = "http://127.0.0.1:8101";

/** The code of a usage error's line; the others are the gateway's codes (src/error-codes.ts). */
export const USAGE_ERROR = "USAGE_ERROR";

/** The command was given something it cannot use: exit code 2, nothing sent. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** 130: stopped by Ctrl-C (128 + SIGINT), as shells report it. */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

export interface ConnectionFlags {
  url: string;
  apiKey?: string;
}

/** `--url` and `--api-key`, on every command that talks to the gateway. */
export function withConnection(command: Command, m: Messages): Command {
  return command
    .addOption(new Option("--url <url>", m.t("opt.url")).env("MULTI_HEYGEM_URL").default(DEFAULT_URL))
    .addOption(new Option("--api-key <key>", m.t("opt.apiKey")).env("MULTI_HEYGEM_API_KEY"));
}

export function connect(flags: ConnectionFlags, m: Messages): Client {
  let url: URL | undefined;
  try {
    url = new URL(flags.url);
  } catch {
    // reported below
  }
  if (url?.protocol !== "http:" && url?.protocol !== "https:") {
    throw new UsageError(m.t("usage.badUrl", { value: flags.url }));
  }
  return new Client({ url: flags.url, ...(flags.apiKey ? { apiKey: flags.apiKey } : {}) });
}

/**
 * Runs a command's body and ends the process with its exit code. A failure becomes one line,
 * `multi-heygem: <code>: <message>`, like the other commands' errors: code 2 for a usage error,
 * 1 for a gateway that refused or could not be reached.
 */
export async function runCommand(body: () => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await body();
  } catch (err) {
    code = err instanceof UsageError ? EXIT.usage : EXIT.failed;
    process.stderr.write(`multi-heygem: ${errorLine(err)}\n`);
  }
  // Ended here rather than left to drain: an idle keep-alive socket would hold the process open.
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.exit(code);
}

export function errorLine(err: unknown): string {
  if (err instanceof UsageError) return `${USAGE_ERROR}: ${err.message}`;
  if (err instanceof ApiError) return `${err.code}: ${oneLine(err.message)}`;
  const { code } = err as { code?: unknown };
  const message = err instanceof Error ? err.message : String(err);
  return `${typeof code === "string" ? code : "ERROR"}: ${oneLine(message)}`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
