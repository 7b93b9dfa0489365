import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** `json` lines for machines, `pretty` lines for people; by default pretty on a terminal. */
  format?: "json" | "pretty" | undefined;
}

/**
 * JSON lines for machines to read, pretty lines when a person watches a terminal; ISO-8601 UTC
 * times in both (issue 10), so lines from machines in different zones sort and compare as text.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const format = options.format ?? (process.stdout.isTTY === true ? "pretty" : "json");
  if (format === "pretty") {
    return pino({
      level,
      transport: {
        target: "pino-pretty",
        options: { translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'", ignore: "pid,hostname" },
      },
    });
  }
  return pino({ level, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A client's text (a task's description) as log lines carry it: enough to recognise, one line. */
export function forLog(text: string, max = 60): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
