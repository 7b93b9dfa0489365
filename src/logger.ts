import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Human-readable lines; defaults to "stdout is a terminal". */
  pretty?: boolean;
}

/** JSON lines for machines to read, pretty lines when a person watches a terminal. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  if (pretty) {
    return pino({
      level,
      transport: {
        target: "pino-pretty",
        options: { translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" },
      },
    });
  }
  return pino({ level });
}
