import { afterEach, describe, expect, it } from "vitest";
import { resolveGatewayConfig } from "../../src/config/gateway-config.js";
import { bearer, testKey, writeKeysFile } from "../helpers/api-keys.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";

type Gateway = Awaited<ReturnType<typeof startTestGateway>>;

/**
 * Issue 9, "No cross-site writes": a web page can make any browser on the LAN send a POST with a
 * text/plain or form body, or a bodiless one, without asking first. Routes that change state
 * refuse such requests before anything changes; without --cors-origin no CORS header is sent.
 */
describe("cross-site writes and CORS", () => {
  const started: Gateway[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const g of started.splice(0)) {
      await g.close();
      await removeDir(g.dataDir);
    }
    for (const d of dirs.splice(0)) await removeDir(d);
  });
  const start = async (flags: Parameters<typeof startTestGateway>[0] = {}) => {
    const gateway = await startTestGateway(flags);
    started.push(gateway);
    return gateway;
  };
  const draining = async (gateway: Gateway, headers: Record<string, string> = {}) =>
    (
      (await (await fetch(`${gateway.url}/machines`, { headers })).json()) as {
        machines: { draining: boolean }[];
      }
    ).machines[0]?.draining;

  it.each([
    ["text/plain", "anything"],
    ["text/plain;charset=UTF-8", "{}"],
    ["application/x-www-form-urlencoded", "a=1"],
    ["multipart/form-data; boundary=x", "--x--\r\n"],
  ])("POST /machines/x/drain with %s is 415 and drains nothing", async (type, body) => {
    const gateway = await start();
    const res = await fetch(`${gateway.url}/machines/embedded/drain`, {
      method: "POST",
      headers: { "content-type": type },
      body,
    });
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ error: "UNSUPPORTED_CONTENT_TYPE" });
    expect(await draining(gateway)).toBe(false);
  });

  it("a bodiless POST without a content type (curl, the seed) still works", async () => {
    const gateway = await start();
    expect((await fetch(`${gateway.url}/machines/embedded/drain`, { method: "POST" })).status).toBe(200);
    expect(await draining(gateway)).toBe(true);
  });

  it("a POST a browser sent from another site is refused (403); one from the page's own origin is not", async () => {
    const gateway = await start();
    const evil = await fetch(`${gateway.url}/machines/embedded/drain`, {
      method: "POST",
      headers: { origin: "http://evil.example" },
    });
    expect(evil.status).toBe(403);
    expect(((await evil.json()) as { error: string }).error).toBe("CROSS_SITE_REQUEST");
    expect(await draining(gateway)).toBe(false);

    // Swagger UI at /docs posts with the gateway's own origin.
    const own = await fetch(`${gateway.url}/machines/embedded/drain`, {
      method: "POST",
      headers: { origin: gateway.url },
    });
    expect(own.status).toBe(200);
  });

  it("sends no CORS headers and answers no preflight without --cors-origin", async () => {
    const gateway = await start();
    const res = await fetch(`${gateway.url}/tasks`, { headers: { origin: "http://app.example" } });
    expect(res.status).toBe(200);
    expect([...res.headers.keys()].filter((h) => h.startsWith("access-control-"))).toEqual([]);
    const preflight = await fetch(`${gateway.url}/tasks`, {
      method: "OPTIONS",
      headers: { origin: "http://app.example", "access-control-request-method": "POST" },
    });
    expect([...preflight.headers.keys()].filter((h) => h.startsWith("access-control-"))).toEqual([]);
  });

  it("with --cors-origin, exactly those origins get CORS headers, also on a 401, and a preflight", async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const admin = testKey("boss", "admin");
    await writeKeysFile(`${dir}/keys.json`, [admin]);
    const gateway = await start({
      corsOrigin: ["http://app.example,http://other.example:8080"],
      apiKeys: `${dir}/keys.json`,
    });
    const allowed = await fetch(`${gateway.url}/tasks`, {
      headers: { origin: "http://other.example:8080", ...bearer(admin) },
    });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://other.example:8080");
    expect(allowed.headers.get("access-control-expose-headers")).toContain("X-Task-Id");
    expect(allowed.headers.get("vary")).toContain("Origin");

    const refused = await fetch(`${gateway.url}/tasks`, { headers: { origin: "http://app.example" } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe("http://app.example");

    const stranger = await fetch(`${gateway.url}/tasks`, {
      headers: { origin: "http://evil.example", ...bearer(admin) },
    });
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();

    const preflight = await fetch(`${gateway.url}/machines/embedded/drain`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://app.example");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("Authorization");
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");

    // An allowed origin may change state with an admin key; an unlisted one may not.
    const drain = await fetch(`${gateway.url}/machines/embedded/drain`, {
      method: "POST",
      headers: { origin: "http://app.example", ...bearer(admin) },
    });
    expect(drain.status).toBe(200);
    const evil = await fetch(`${gateway.url}/machines/embedded/resume`, {
      method: "POST",
      headers: { origin: "http://evil.example", ...bearer(admin) },
    });
    expect(evil.status).toBe(403);
    expect(await draining(gateway, bearer(admin))).toBe(true);
  });

  it("a --cors-origin that is not an origin stops the start naming the flag", async () => {
    expect(() => resolveGatewayConfig({ corsOrigin: ["https://app.example.com/path"] })).toThrow(
      /--cors-origin: "https:\/\/app.example.com\/path" is not an origin/,
    );
  });
});
