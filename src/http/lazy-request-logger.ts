import type { FastifyBaseLogger } from "fastify";
import type { Bindings, ChildLoggerOptions, LogFn } from "pino";

/** Fastify's `childLoggerFactory`, as far as this one uses it. */
type RequestLoggerFactory = (
  parent: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
  raw: { readonly url?: string | undefined },
) => FastifyBaseLogger;

type Level = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/**
 * Fastify gives every request a child logger, and a pino child serializes its bindings the moment
 * it is made: on `GET /tasks/{id}` that was about a quarter of the CPU the whole read takes
 * (measured: 47 → 36 µs per request). Request logging is off (reads would bury the task steps),
 * so most requests never log a line. Their logger is made on the first line they log, with the
 * same bindings and options as before, and a request that logs nothing never makes one.
 *
 * `bind` adds bindings read from the URL (a task's id), when the logger is made.
 */
export function lazyRequestLogger(bind?: (url: string) => Bindings | undefined): RequestLoggerFactory {
  return (parent, bindings, options, raw) => {
    let made: FastifyBaseLogger | undefined;
    const logger = (): FastifyBaseLogger => {
      if (made === undefined) {
        const extra = bind?.(raw.url ?? "");
        made = parent.child(extra ? { ...bindings, ...extra } : bindings, options);
      }
      return made;
    };
    const level = (name: Level): LogFn =>
      ((...args: unknown[]) => (logger()[name] as (...a: unknown[]) => void)(...args)) as LogFn;
    return {
      get level() {
        return logger().level;
      },
      set level(value: string) {
        logger().level = value;
      },
      fatal: level("fatal"),
      error: level("error"),
      warn: level("warn"),
      info: level("info"),
      debug: level("debug"),
      trace: level("trace"),
      silent: level("silent"),
      child: (more: Bindings, childOptions?: ChildLoggerOptions) => logger().child(more, childOptions),
    };
  };
}
