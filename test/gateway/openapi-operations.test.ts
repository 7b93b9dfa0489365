import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, startTestGateway } from "../helpers/gateway.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;
interface Operation {
  summary?: string;
  responses: Record<string, { content?: Record<string, { schema?: { properties?: object } }> }>;
}

/** The operations routes (README, "Health and metrics") are in the OpenAPI document like the rest. */
describe("API documentation of /healthz, /readyz and /metrics", () => {
  let gateway: Gateway;
  let paths: Record<string, Record<string, Operation>>;

  beforeAll(async () => {
    gateway = await startTestGateway();
    paths = ((await (await fetch(`${gateway.url}/openapi.json`)).json()) as { paths: typeof paths }).paths;
  });
  afterAll(async () => {
    await gateway.close();
    await removeDir(gateway.dataDir);
  });

  it("documents each with its status codes and body", () => {
    expect(paths["/healthz"]?.get?.summary).toBeTruthy();
    expect(Object.keys(paths["/healthz"]?.get?.responses ?? {})).toEqual(["200"]);
    const ready = paths["/readyz"]?.get;
    expect(Object.keys(ready?.responses ?? {}).sort()).toEqual(["200", "503"]);
    const checks = ready?.responses["503"]?.content?.["application/json"]?.schema?.properties;
    expect(Object.keys(checks ?? {})).toEqual(["status", "failing", "checks"]);
  });

  it("says /metrics answers text, not JSON", () => {
    const content = paths["/metrics"]?.get?.responses["200"]?.content ?? {};
    expect(Object.keys(content)).toEqual(["text/plain"]);
  });
});
