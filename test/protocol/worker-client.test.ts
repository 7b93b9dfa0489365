import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/error-codes.js";
import { ProtocolError } from "../../src/errors.js";
import {
  isWorkerError,
  WorkerClient,
  WorkerHttpError,
  WorkerUnreachableError,
} from "../../src/protocol/worker-client.js";
import { rejection } from "../helpers/rejection.js";
import { healthyWorker, type ScriptedAnswer, startScriptedServer } from "../helpers/scripted-server.js";

const SHA = "a".repeat(64);
const VIEW = {
  id: "job-1",
  status: "running",
  progress: 40,
  created_at: "2026-01-01T00:00:00.000Z",
  version: 3,
};

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A client of a server that answers every request with `answer`. */
async function clientOf(answer: (method: string, path: string) => ScriptedAnswer): Promise<WorkerClient> {
  const server = await startScriptedServer(answer);
  cleanups.push(() => server.close());
  return new WorkerClient({ baseUrl: server.url, requestTimeoutMs: 5_000 });
}

const protocolError = (call: Promise<unknown>) => rejection(call, ProtocolError);

describe("WorkerClient checks every answer against the protocol", () => {
  it("passes well-formed answers through, typed", async () => {
    const client = await clientOf((method) =>
      method === "GET" ? { body: healthyWorker({ running: ["job-1"] }) } : { status: 201, body: VIEW },
    );
    expect(await client.health()).toMatchObject({ protocol: 1, running: ["job-1"] });
    expect(
      await client.putJob("job-1", { audio: { sha256: SHA, bytes: 1 }, video: { sha256: SHA, bytes: 1 } }),
    ).toEqual(VIEW);
  });

  it("a field of the wrong type: the endpoint, the field and what was expected", async () => {
    const client = await clientOf(() => ({
      body: healthyWorker({ max_concurrent: "2" as unknown as number }),
    }));
    const err = await protocolError(client.health());
    expect(err.endpoint).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/v1\/health$/);
    expect(err.problem).toBe("/max_concurrent: Expected integer");
    expect(err.message).toContain("not a worker's health");
    expect(err.code).toBe(ERROR_CODES.PROTOCOL_ERROR.code);
    expect(err.kind).toBe("machine");
  });

  it("a missing field", async () => {
    const { running: _running, ...partial } = healthyWorker();
    const client = await clientOf(() => ({ body: partial }));
    expect((await protocolError(client.health())).problem).toBe("/running: Expected required property");
  });

  it("an HTML page where JSON belongs: named as a page by its title, not quoted", async () => {
    const page = `<html><head><title>Welcome to nginx!</title></head><body>${"Welcome! ".repeat(40)}</body></html>`;
    const client = await clientOf(() => ({ body: page }));
    const err = await protocolError(client.getJob("job-1"));
    expect(err.problem).toBe("not JSON");
    expect(err.status).toBe(200);
    expect(err.message).toContain('body: an HTML page titled "Welcome to nginx!"');
    expect(err.message).not.toContain("<");
  });

  it("an error page from something that is not a worker agent says so (issue 10)", async () => {
    const client = await clientOf(() => ({
      status: 404,
      body: "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>",
    }));
    const err = await client.health().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "WorkerHttpError", status: 404, code: "HTTP_404", kind: "machine" });
    expect((err as Error).message).toMatch(
      /^HTTP 404 with an HTML page titled "404 Not Found": not a worker agent's answer; machines.json must name the agent/,
    );
    expect((err as Error).message).not.toContain("<");
  });

  it("a job view with a status outside the protocol, or of another job", async () => {
    const odd = await clientOf(() => ({ body: { ...VIEW, status: "done" } }));
    expect((await protocolError(odd.getJob("job-1"))).problem).toMatch(/^\/status: /);
    const other = await clientOf(() => ({ body: { ...VIEW, id: "job-2" } }));
    expect((await protocolError(other.getJob("job-1"))).problem).toBe("/id: job-2");
  });

  it("a blob answer with a negative size, and an upload echoed with another hash", async () => {
    const negative = await clientOf(() => ({ status: 201, body: { sha256: SHA, bytes: -1 } }));
    expect((await protocolError(negative.postBlob(Readable.from([Buffer.from("x")])))).problem).toMatch(
      /^\/bytes: /,
    );
    const echo = await clientOf(() => ({ status: 201, body: { sha256: "b".repeat(64), bytes: 1 } }));
    const dir = await mkdtemp(join(tmpdir(), "mh-client-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "blob"), "x");
    const err = await protocolError(echo.putBlob(SHA, join(dir, "blob"), 1));
    expect(err.problem).toBe(`/sha256: ${"b".repeat(64)}`);
  });

  it("reads a worker's error body through the catalogue, and keeps a proxy's page as it came", async () => {
    const missing = await clientOf(() => ({
      status: 409,
      body: { error: "BLOB_MISSING", message: "upload the video blob first", field: "video" },
    }));
    const refused: unknown = await missing
      .putJob("job-1", {
        audio: { sha256: SHA, bytes: 1 },
        video: { sha256: SHA, bytes: 1 },
      })
      .catch((e: unknown) => e);
    expect(isWorkerError(refused, ERROR_CODES.BLOB_MISSING)).toBe(true);
    expect(refused).toMatchObject({ status: 409, field: "video", message: "upload the video blob first" });

    const proxy = await clientOf(() => ({ status: 502, body: "<html>502 Bad Gateway</html>" }));
    const bad: unknown = await proxy.health().catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(WorkerHttpError);
    expect(bad).toMatchObject({ status: 502, code: "HTTP_502", kind: "machine" });
  });

  it("a connection cut in the middle of an answer is the worker unreachable, not a bad answer", async () => {
    const client = await clientOf(() => ({ body: healthyWorker(), cutMidBody: true }));
    await expect(client.health()).rejects.toBeInstanceOf(WorkerUnreachableError);
  });
});
