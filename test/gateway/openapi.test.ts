import { validate } from "@readme/openapi-parser";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHARED_SCHEMAS } from "../../src/gateway/api/docs.js";
import { OPENAPI_EXAMPLES } from "../../src/gateway/api/openapi-examples.js";
import { removeDir, startTestGateway } from "../helpers/gateway.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
interface Operation {
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  callbacks?: Record<string, Record<string, { post?: { requestBody?: { description?: string } } }>>;
  requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> };
  responses: Record<string, { description?: string; content?: Record<string, Media> }>;
}
interface Media {
  schema?: { $ref?: string; example?: unknown; format?: string; type?: string };
  example?: unknown;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, Record<string, string>> };
}

// ajv-formats is CommonJS whose module.exports is the plugin itself.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

describe("API documentation", () => {
  let gateway: Gateway;
  let doc: Document;

  beforeAll(async () => {
    gateway = await startTestGateway();
    doc = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as Document;
  });
  afterAll(async () => {
    await gateway.close();
    await removeDir(gateway.dataDir);
  });

  it("is an OpenAPI 3 document of every route with its status codes", () => {
    expect(doc.openapi).toMatch(/^3\./);
    const expected: Record<string, Record<string, string[]>> = {
      "/tasks": { post: ["200", "400", "408", "413", "415", "429", "503", "507"], get: ["200", "400"] },
      "/tasks/sync": {
        post: ["200", "400", "408", "409", "413", "415", "422", "429", "502", "503", "504", "507"],
      },
      "/tasks/{task_id}/cancel": { post: ["200", "404", "409"] },
      "/tasks/{task_id}/retry": { post: ["200", "404", "409", "410", "429"] },
      "/tasks/cancel": { post: ["200", "400"] },
      "/tasks/{task_id}": { get: ["200", "404"] },
      "/tasks/{task_id}/events": { get: ["200", "404"] },
      "/tasks/{task_id}/callbacks": { get: ["200", "404"] },
      "/tasks/{task_id}/callbacks/redeliver": { post: ["202", "404", "409"] },
      "/tasks/{task_id}/result": { get: ["200", "206", "404", "409", "416"], head: ["200", "404", "409"] },
    };
    for (const [path, methods] of Object.entries(expected)) {
      for (const [method, codes] of Object.entries(methods)) {
        const op = doc.paths[path]?.[method];
        expect(op, `${method} ${path}`).toBeDefined();
        expect(op?.summary).toBeTruthy();
        for (const code of codes)
          expect(Object.keys(op?.responses ?? {}), `${method} ${path}`).toContain(code);
      }
    }
  });

  it("describes the multipart form with both spellings of the file fields", () => {
    for (const path of ["/tasks", "/tasks/sync"]) {
      const form =
        doc.paths[path]?.post?.requestBody?.content["multipart/form-data"]?.schema.properties ?? {};
      for (const field of ["audio", "audio_file", "video", "video_file", "description", "callback_url"]) {
        expect(Object.keys(form), path).toContain(field);
      }
    }
  });

  it("names the shared schemas, the error body among them", () => {
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining([
        "Task",
        "TaskList",
        "TaskEvents",
        "ErrorBody",
        "TaskCallbacks",
        "CallbackDelivery",
      ]),
    );
  });

  it("shows the bearer security scheme and what each route needs (issue 9)", () => {
    expect(doc.components.securitySchemes?.apiKey).toMatchObject({ type: "http", scheme: "bearer" });
    const needs = (path: string, method: string) => doc.paths[path]?.[method];
    for (const [path, method, role] of [
      ["/tasks", "post", "submit"],
      ["/tasks/{task_id}", "get", "submit"],
      ["/machines", "get", "admin"],
      ["/machines/{name}/drain", "post", "admin"],
      ["/tasks/{task_id}/cancel", "post", "submit"],
      ["/tasks/{task_id}/retry", "post", "submit"],
      ["/tasks/cancel", "post", "admin"],
    ] as const) {
      const op = needs(path, method);
      expect(op?.security, `${method} ${path}`).toEqual([{ apiKey: [] }]);
      expect(Object.keys(op?.responses ?? {}), `${method} ${path}`).toEqual(
        expect.arrayContaining(["401", "403"]),
      );
      expect(op?.description, `${method} ${path}`).toContain(
        role === "admin" ? "Needs an admin key" : "submit",
      );
    }
  });

  it("describes the signed callback a callback_url receives, on both routes that take one", () => {
    for (const path of ["/tasks", "/tasks/sync"]) {
      const callback =
        doc.paths[path]?.post?.callbacks?.statusChange?.["{$request.body#/callback_url}"]?.post;
      expect(JSON.stringify(callback), path).toContain("#/components/schemas/CallbackPayload");
      expect(callback?.requestBody?.description, path).toMatch(
        /webhook-id.*webhook-timestamp.*webhook-signature/,
      );
    }
    expect(Object.keys(doc.components.schemas)).toContain("CallbackPayload");
  });

  it("passes an OpenAPI validator without a warning", async () => {
    const result = await validate(structuredClone(doc) as never);
    expect(result).toMatchObject({ valid: true, warnings: [] });
  });

  it("describes every response, errors as JSON, and lists one HEAD only (the result's size)", () => {
    const components = doc.components.schemas as Record<string, { example?: unknown }>;
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => ({ path, method, op })),
    );
    expect(operations.filter((o) => o.method === "head").map((o) => o.path)).toEqual([
      "/tasks/{task_id}/result",
    ]);
    for (const { path, method, op } of operations) {
      for (const [code, response] of Object.entries(op.responses)) {
        const where = `${method} ${path} ${code}`;
        expect(response.description, where).toBeTruthy();
        expect(response.description, where).not.toBe("Default Response");
        if (/^[45]/.test(code))
          expect(Object.keys(response.content ?? {}), where).toEqual(["application/json"]);
        for (const [type, media] of Object.entries(response.content ?? {})) {
          const ref = media.schema?.$ref?.replace("#/components/schemas/", "");
          const example =
            media.example ?? media.schema?.example ?? (ref ? components[ref]?.example : undefined);
          const binary = media.schema?.format === "binary" || type === "text/plain";
          expect(example !== undefined || binary, `${where} ${type}: an example`).toBe(true);
        }
      }
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        expect((media as Media).schema?.example, `${method} ${path} body ${type}: an example`).toBeDefined();
      }
    }
  });

  it("gives every shared schema an example that its own schema accepts", () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    for (const schema of SHARED_SCHEMAS) ajv.addSchema(schema);
    for (const schema of SHARED_SCHEMAS) {
      const id = schema.$id ?? "";
      const example = OPENAPI_EXAMPLES[id];
      expect(example, id).toBeDefined();
      const check = ajv.getSchema(id);
      expect(check?.(example), `${id}: ${ajv.errorsText(check?.errors)}`).toBe(true);
      expect((doc.components.schemas[id] as { example?: unknown }).example).toEqual(example);
    }
  });

  it("serves Swagger UI at /docs", async () => {
    const res = await fetch(`${gateway.url}/docs`, { redirect: "follow" });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("swagger");
  });
});
