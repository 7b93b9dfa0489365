import fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { lazyRequestLogger } from "../../src/http/lazy-request-logger.js";

interface Line {
  level: number;
  msg: string;
  reqId?: string;
  task_id?: string;
  voice_id?: string;
}

const INFO = 30;
const WARN = 40;
const TASK_ID = "0b1e4f7a-3c2d-4e5f-8a9b-0c1d2e3f4a5b";

/**
 * Each request's logger is made on its first line, with the bindings and level Fastify gives it,
 * and never for a request that logs nothing. A bare Fastify app on loopback logs into memory
 * through a real pino logger whose `child` is counted.
 */
describe("request loggers made on their first line", () => {
  let app: FastifyInstance;
  let url: string;
  let lines: Line[];
  let children: number;

  beforeEach(async () => {
    lines = [];
    children = 0;
    const root = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line) as Line) });
    // Counts the loggers made for requests (Fastify binds each its reqId); pino's children, and
    // the one Fastify makes of this logger, inherit this method.
    const child = root.child;
    root.child = function (this: typeof root, ...args: Parameters<typeof child>) {
      if ("reqId" in args[0]) children++;
      return child.apply(this, args);
    } as typeof root.child;
    app = fastify({
      loggerInstance: root as FastifyBaseLogger,
      disableRequestLogging: true,
      childLoggerFactory: lazyRequestLogger((path) => {
        const id = /^\/tasks\/([0-9a-f-]{36})$/.exec(path)?.[1];
        return id ? { task_id: id } : undefined;
      }),
    });
    app.get("/quiet", async () => ({ ok: true }));
    app.get("/tasks/:id", async (request) => {
      request.log.info("first");
      request.log.warn({ step: 2 }, "second");
      return { ok: true };
    });
    app.get("/voices", async (request) => {
      request.log.child({ voice_id: "v1" }).info("about a voice");
      return { ok: true };
    });
    app.get("/probe", { logLevel: "warn" }, async (request) => {
      request.log.info("dropped at this route's level");
      request.log.warn("kept");
      return { level: request.log.level };
    });
    url = await app.listen({ host: "127.0.0.1", port: 0 });
    // Whatever start-up made is not the requests'.
    children = 0;
    lines = [];
  });

  afterEach(async () => {
    await app.close();
  });

  it("a request that logs nothing makes no logger", async () => {
    for (let i = 0; i < 5; i++) expect((await fetch(`${url}/quiet`)).status).toBe(200);
    expect(children).toBe(0);
    expect(lines).toEqual([]);
  });

  it("a request's lines come from one logger, with its request id and what its URL binds", async () => {
    expect((await fetch(`${url}/tasks/${TASK_ID}`)).status).toBe(200);
    expect(children).toBe(1);
    expect(lines.map((l) => [l.level, l.msg, l.task_id])).toEqual([
      [INFO, "first", TASK_ID],
      [WARN, "second", TASK_ID],
    ]);
    expect(lines[0]?.reqId).toBeTruthy();
    expect(lines[1]?.reqId).toBe(lines[0]?.reqId);

    expect((await fetch(`${url}/tasks/${TASK_ID}`)).status).toBe(200);
    expect(children).toBe(2);
    expect(lines[2]?.reqId).not.toBe(lines[0]?.reqId);
  });

  it("a child of a request's logger carries the request's bindings and its own", async () => {
    expect((await fetch(`${url}/voices`)).status).toBe(200);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "about a voice", voice_id: "v1" });
    expect(lines[0]?.reqId).toBeTruthy();
    expect(lines[0]?.task_id).toBeUndefined();
  });

  it("a route's log level holds for its requests", async () => {
    const res = await fetch(`${url}/probe`);
    expect(await res.json()).toEqual({ level: "warn" });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[WARN, "kept"]]);
  });
});
