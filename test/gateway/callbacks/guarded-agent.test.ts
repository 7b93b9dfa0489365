import type { LookupAddress } from "node:dns";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AddressPolicy } from "../../../src/gateway/callbacks/address-policy.js";
import {
  CallbackRefusedError,
  guardedAgent,
  type Lookup,
} from "../../../src/gateway/callbacks/guarded-agent.js";

/** A resolver that answers from a table, as a rebinding DNS server would. */
function fakeDns(table: Record<string, string[]>): Lookup {
  return (hostname, _options, callback) => {
    const addresses = table[hostname];
    if (!addresses) return callback(Object.assign(new Error(`no ${hostname}`), { code: "ENOTFOUND" }), []);
    callback(
      null,
      addresses.map((address): LookupAddress => ({ address, family: address.includes(":") ? 6 : 4 })),
    );
  };
}

describe("the guarded callback agent", () => {
  let server: Server;
  let port: number;
  const hits: string[] = [];

  beforeEach(async () => {
    hits.length = 0;
    server = createServer((req, res) => {
      hits.push(`${req.method} ${req.headers.host} ${req.url}`);
      res.end("ok");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** The receiver's port plays the gateway's own when `self` is set. */
  function agent(table: Record<string, string[]>, self = false) {
    const policy = new AddressPolicy({ ownPorts: () => (self ? [port] : []), localAddresses: () => [] });
    return guardedAgent(policy, { lookup: fakeDns(table) });
  }

  async function post(url: string, dispatcher: ReturnType<typeof guardedAgent>) {
    try {
      const res = await request(url, { method: "POST", body: "{}", dispatcher });
      await res.body.dump();
      return res.statusCode;
    } finally {
      await dispatcher.close();
    }
  }

  it("dials a name that resolves to an allowed address, with the name in Host", async () => {
    const status = await post(`http://hooks.test:${port}/hook`, agent({ "hooks.test": ["127.0.0.1"] }));
    expect(status).toBe(200);
    expect(hits).toEqual([`POST hooks.test:${port} /hook`]);
  });

  it("refuses a name that resolves to the gateway's own port, and nothing reaches it", async () => {
    const err = await post(
      `http://rebound.test:${port}/machines/embedded/drain`,
      agent({ "rebound.test": ["127.0.0.1"] }, true),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CallbackRefusedError);
    expect((err as Error).message).toMatch(
      new RegExp(`the gateway itself \\(127\\.0\\.0\\.1:${port}\\), which rebound\\.test resolves to`),
    );
    expect(hits).toEqual([]);
  });

  it("refuses a name that resolves to the metadata address", async () => {
    const err = await post("http://meta.test/latest", agent({ "meta.test": ["169.254.169.254"] })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CallbackRefusedError);
    expect((err as Error).message).toMatch(/cloud metadata address \(169\.254\.169\.254\)/);
  });

  it("refuses a name whose answer mixes an allowed address with a forbidden one", async () => {
    const err = await post(
      `http://mixed.test:${port}/`,
      agent({ "mixed.test": ["127.0.0.1", "::ffff:169.254.169.254"] }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CallbackRefusedError);
    expect(hits).toEqual([]);
  });

  it("refuses a literal address of the gateway itself without resolving anything", async () => {
    const err = await post(`http://127.0.0.1:${port}/`, agent({}, true)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CallbackRefusedError);
    expect(hits).toEqual([]);
  });

  it("reports a name that does not resolve as an ordinary error (worth a retry)", async () => {
    const err = await post("http://nowhere.test/", agent({})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(CallbackRefusedError);
  });
});
