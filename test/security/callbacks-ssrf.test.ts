import { lookup } from "node:dns/promises";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lookup } from "../../src/gateway/callbacks/guarded-agent.js";
import { filesUnder, removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { killAll, type Started, startGatewayProcess } from "../helpers/processes.js";
import { makeTaskInputs, submitTask, type TaskInputs } from "../helpers/task-inputs.js";
import { until } from "../helpers/until.js";

/**
 * Issue 9, "No SSRF": `callback_url=http://127.0.0.1:8101/machines/embedded/drain` made the gateway
 * drain itself, and `http://169.254.169.254/...` was POSTed to. Replayed against a real gateway
 * process, and with names that resolve to such addresses only when dialled.
 */

interface Delivery {
  state: string;
  last_error: string | null;
  tries: Array<{ http_status: number | null; error: string | null }>;
}

async function json<T>(res: Response | Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

async function drained(url: string): Promise<boolean> {
  const { machines } = await json<{ machines: Array<{ name: string; draining: boolean }> }>(
    fetch(`${url}/machines`),
  );
  return machines.find((m) => m.name === "embedded")?.draining ?? false;
}

/** The task's deliveries once none is pending any more. */
async function settledDeliveries(url: string, taskId: string, count: number): Promise<Delivery[]> {
  return until(async () => {
    const { deliveries } = await json<{ deliveries: Delivery[] }>(fetch(`${url}/tasks/${taskId}/callbacks`));
    return deliveries.length >= count && deliveries.every((d) => d.state !== "pending") && deliveries;
  }, 30_000);
}

describe("callback_url at submit, against a gateway process", () => {
  let dir: string;
  let inputs: TaskInputs;
  let gateway: Started;
  let port: string;

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    gateway = await startGatewayProcess(["--data-dir", join(dir, "data")], { cwd: dir });
    port = new URL(gateway.url).port;
  });
  afterAll(async () => {
    await killAll();
    await removeDir(dir);
  });

  const probes = () => [
    `http://127.0.0.1:${port}/machines/embedded/drain`,
    `http://localhost:${port}/machines/embedded/drain`,
    `http://[::1]:${port}/machines/embedded/drain`,
    `http://0.0.0.0:${port}/machines/embedded/drain`,
    `http://2130706433:${port}/machines/embedded/drain`,
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://2852039166/latest",
    "http://0xA9FEA9FE/latest",
    "http://[::ffff:169.254.169.254]/latest",
    "http://169.254.169.254./latest",
    "http://[fd00:ec2::254]/latest",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
  ];

  it("refuses every probe with 400 naming callback_url, and nothing is created, stored or drained", async () => {
    // The embedded worker agent, as GET /machines shows it: its blob and job routes are not a receiver.
    const { machines } = await json<{ machines: Array<{ host: string; port: number }> }>(
      fetch(`${gateway.url}/machines`),
    );
    const worker = machines.map((m) => `http://${m.host}:${m.port}/v1/blobs`);
    expect(worker).toHaveLength(1);
    for (const url of [...probes(), ...worker]) {
      const res = await submitTask(gateway.url, inputs, { callback_url: url });
      const body = await json<{ error: string; message: string; field: string }>(res);
      expect(res.status, url).toBe(400);
      expect(body, url).toMatchObject({ error: "CALLBACK_URL_FORBIDDEN", field: "callback_url" });
      expect(body.message, url).toMatch(/^callback_url may not point at /);
      expect(body.message, url).not.toMatch(/\/tmp|data\//);
    }
    expect((await json<{ total: number }>(fetch(`${gateway.url}/tasks`))).total).toBe(0);
    expect(await drained(gateway.url)).toBe(false);
    expect((await filesUnder(join(dir, "data"))).filter((f) => f.startsWith("blobs/"))).toEqual([]);
  });

  it("still takes a receiver on loopback or the LAN", async () => {
    const res = await submitTask(gateway.url, inputs, { callback_url: "http://127.0.0.1:9/hook" });
    expect(res.status).toBe(200);
    const lan = await submitTask(gateway.url, inputs, { callback_url: `http://192.168.1.20:${port}/hook` });
    expect(lan.status).toBe(200);
  });

  // A name from the machine's own resolver (its host name, in /etc/hosts) that means this machine:
  // it passes the check at submit (names are judged when dialled) and must be refused there.
  it("refuses, when dialling, a host name that resolves to the gateway itself", async (ctx) => {
    const name = hostname();
    const local = new Set(
      Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)),
    );
    const address = await lookup(name).catch(() => undefined);
    if (!address || !(address.address.startsWith("127.") || local.has(address.address))) {
      process.stderr.write(
        `skipped: this machine's host name ${name} does not resolve to one of its addresses\n`,
      );
      ctx.skip();
      return;
    }
    const res = await submitTask(gateway.url, inputs, {
      callback_url: `http://${name}:${port}/machines/embedded/drain`,
    });
    expect(res.status).toBe(200);
    const { task_id } = await json<{ task_id: string }>(res);
    const [first] = await settledDeliveries(gateway.url, task_id, 1);
    expect(first?.state).toBe("given_up");
    expect(first?.last_error).toMatch(
      /^refused to connect to the gateway itself \(.+\), which .+ resolves to$/,
    );
    expect(first?.tries).toHaveLength(1);
    expect(first?.tries[0]?.http_status).toBeNull();
    expect(await drained(gateway.url)).toBe(false);
  });
});

describe("callback hosts that resolve to forbidden addresses only when dialled", () => {
  let dir: string;
  let inputs: TaskInputs;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let gatewayPort = 0;

  // A rebinding DNS server: harmless names that answer with the gateway or the metadata service.
  const rebinding: Lookup = (name, _options, callback) => {
    const table: Record<string, string> = {
      "hooks.rebind.test": "127.0.0.1",
      "meta.rebind.test": "169.254.169.254",
      "mapped.rebind.test": "::ffff:169.254.169.254",
    };
    const address = table[name];
    if (!address)
      return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" }), []);
    callback(null, [{ address, family: address.includes(":") ? 6 : 4 }]);
  };

  beforeAll(async () => {
    dir = await tempDir();
    inputs = await makeTaskInputs(dir);
    gateway = await startTestGateway({}, undefined, { callbackLookup: rebinding });
    gatewayPort = gateway.port;
  });
  afterAll(async () => {
    await gateway.close();
    await removeDir(gateway.dataDir);
    await removeDir(dir);
  });

  it.each([
    [
      "hooks.rebind.test",
      () => `:${gatewayPort}/machines/embedded/drain`,
      /the gateway itself \(127\.0\.0\.1:\d+\)/,
    ],
    ["meta.rebind.test", () => "/latest/meta-data/", /a cloud metadata address \(169\.254\.169\.254\)/],
    ["mapped.rebind.test", () => "/latest/meta-data/", /a cloud metadata address \(169\.254\.169\.254\)/],
  ])(
    "%s: accepted at submit, refused at connect, given up at once with the reason",
    async (name, path, why) => {
      const res = await submitTask(gateway.url, inputs, { callback_url: `http://${name}${path()}` });
      expect(res.status).toBe(200);
      const { task_id } = await json<{ task_id: string }>(res);
      const deliveries = await settledDeliveries(gateway.url, task_id, 3);
      for (const delivery of deliveries) {
        expect(delivery.state).toBe("given_up");
        expect(delivery.last_error).toMatch(why);
        expect(delivery.last_error).toContain(`which ${name} resolves to`);
        expect(delivery.tries).toHaveLength(1);
      }
      expect(await drained(gateway.url)).toBe(false);
    },
  );
});
