import { Readable } from "node:stream";
import { Type } from "@sinclair/typebox";
import fastify, { type FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/error-codes.js";
import { ConflictError, InputError, NotFoundError } from "../../src/errors.js";
import { installErrorHandler } from "../../src/http/error-handler.js";
import type { TypeBoxTypeProvider } from "../../src/http/typebox-provider.js";

/** A bare Fastify app on loopback with the shared error handler and routes that fail on purpose. */
describe("the error handler answers from the catalogue", () => {
  let app: FastifyInstance;
  let url: string;

  beforeEach(async () => {
    app = fastify({ bodyLimit: 64 });
    installErrorHandler(app);
    const typed = app.withTypeProvider<TypeBoxTypeProvider>();
    typed.get("/missing", async () => {
      throw new NotFoundError("no task t1");
    });
    typed.get("/conflict", async () => {
      throw new ConflictError("JOB_NOT_FINISHED", "job j1 is running");
    });
    typed.get("/input", async () => {
      throw new InputError("INVALID_FIELD", "priority must be an integer", "priority");
    });
    typed.get("/bug", async () => {
      throw new Error("secret detail of a bug");
    });
    typed.get("/video", async (_request, reply) =>
      reply
        .type("video/mp4")
        .header("content-disposition", 'attachment; filename="t1.mp4"')
        .send(
          new Readable({
            read() {
              this.destroy(new InputError("INVALID_FIELD", "the file failed before its first byte"));
            },
          }),
        ),
    );
    typed.post("/json", { schema: { body: Type.Object({ name: Type.String() }) } }, async () => ({}));
    url = await app.listen({ host: "127.0.0.1", port: 0 });
  });

  afterEach(async () => {
    await app.close();
  });

  const answer = async (path: string, init?: RequestInit) => {
    const res = await fetch(`${url}${path}`, init);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("a typed error: its code, the catalogue's status, its message and field", async () => {
    expect(await answer("/missing")).toEqual({
      status: 404,
      body: { error: "NOT_FOUND", message: "no task t1" },
    });
    expect(await answer("/conflict")).toEqual({
      status: ERROR_CODES.JOB_NOT_FINISHED.status,
      body: { error: "JOB_NOT_FINISHED", message: "job j1 is running" },
    });
    expect(await answer("/input")).toEqual({
      status: 400,
      body: { error: "INVALID_FIELD", message: "priority must be an integer", field: "priority" },
    });
  });

  it("a body that fails the route's schema is INVALID_REQUEST naming the field", async () => {
    const res = await answer("/json", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: "INVALID_REQUEST", field: "name" });
  });

  it("Fastify's own client errors come under the catalogue's codes", async () => {
    const wrongType = await answer("/json", {
      method: "POST",
      headers: { "content-type": "application/xml" },
      body: "<name>x</name>",
    });
    expect(wrongType).toMatchObject({ status: 415, body: { error: "UNSUPPORTED_MEDIA_TYPE" } });
    const tooLarge = await answer("/json", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "x".repeat(200) }),
    });
    expect(tooLarge).toMatchObject({ status: 413, body: { error: "BODY_TOO_LARGE" } });
    const notJson = await answer("/json", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    expect(notJson).toMatchObject({ status: 400, body: { error: "BAD_REQUEST" } });
  });

  it("a bug is INTERNAL, and its details stay in the log", async () => {
    const res = await answer("/bug");
    expect(res).toEqual({
      status: 500,
      body: { error: "INTERNAL", message: "internal error; see the server log" },
    });
  });

  it("a file's stream that fails before its first byte answers JSON, not the file's type", async () => {
    const res = await fetch(`${url}/video`);
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("content-disposition")).toBeNull();
    expect(await res.json()).toEqual({
      error: "INVALID_FIELD",
      message: "the file failed before its first byte",
    });
  });

  it("an unknown route is NOT_FOUND", async () => {
    expect(await answer("/nowhere")).toMatchObject({ status: 404, body: { error: "NOT_FOUND" } });
  });
});
