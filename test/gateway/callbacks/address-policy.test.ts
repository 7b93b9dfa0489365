import { describe, expect, it } from "vitest";
import { AddressPolicy } from "../../../src/gateway/callbacks/address-policy.js";
import { parseAllowList } from "../../../src/http/allow-list.js";

const GATEWAY_PORT = 8101;
const LAN_ADDRESS = "192.168.1.50";

function policy(allow?: string[]) {
  const parsed = allow ? parseAllowList(allow) : undefined;
  if (parsed && !("list" in parsed)) throw new Error(`bad list ${parsed.bad}`);
  return new AddressPolicy({
    allow: parsed?.list,
    ownPorts: () => [GATEWAY_PORT, 40123],
    localAddresses: () => ["127.0.0.1", "::1", LAN_ADDRESS, "fe80::1"],
    machines: () => [
      { name: "gpu-01", host: "192.168.1.101", port: 8000 },
      { name: "gpu-02", host: "gpu-02.lan", port: 8000 },
    ],
  });
}

describe("callback address policy at submit", () => {
  const p = policy();
  it.each([
    ["http://169.254.169.254/latest/meta-data/", /cloud metadata address \(169\.254\.169\.254\)/],
    ["http://2852039166/", /cloud metadata/],
    ["http://0xA9FEA9FE/", /cloud metadata/],
    ["http://0251.0376.0251.0376/", /cloud metadata/],
    ["http://169.254.169.254./x", /cloud metadata/],
    ["http://[::ffff:169.254.169.254]/", /cloud metadata address \(169\.254\.169\.254\)/],
    ["http://[::ffff:a9fe:a9fe]/", /cloud metadata/],
    ["http://[fd00:ec2::254]/", /cloud metadata/],
    ["http://100.100.100.200/", /cloud metadata/],
    ["http://metadata.google.internal/computeMetadata/v1/", /cloud metadata service/],
    ["http://METADATA.google.internal./", /cloud metadata service/],
    ["http://169.254.1.2/", /link-local/],
    ["http://[fe80::1]/", /link-local/],
    ["http://[::ffff:169.254.1.2]/", /link-local/],
    ["http://[64:ff9b::a9fe:a9fe]/", /cloud metadata/],
    ["http://0.0.0.0:8000/", /unspecified/],
    ["http://0/", /unspecified/],
    ["http://[::]/", /unspecified/],
    ["http://224.0.0.1/", /multicast/],
    ["http://[ff02::1]/", /multicast/],
    ["http://255.255.255.255/", /broadcast/],
    ["http://240.0.0.1/", /reserved/],
    ["http://127.0.0.1:8101/machines/embedded/drain", /the gateway itself \(127\.0\.0\.1:8101\)/],
    ["http://127.0.0.2:8101/", /the gateway itself/],
    ["http://2130706433:8101/", /the gateway itself/],
    ["http://0x7f.1:8101/", /the gateway itself/],
    ["http://localhost:8101/", /the gateway itself \(localhost:8101\)/],
    ["http://LocalHost.:8101/", /the gateway itself/],
    ["http://api.localhost:8101/", /the gateway itself/],
    ["http://[::1]:8101/", /the gateway itself \(::1:8101\)/],
    ["http://[::ffff:127.0.0.1]:8101/", /the gateway itself/],
    [`http://${LAN_ADDRESS}:8101/`, /the gateway itself/],
    ["http://127.0.0.1:40123/v1/blobs", /the gateway itself/],
    ["http://192.168.1.101:8000/v1/blobs", /the worker agent of machine gpu-01 \(192\.168\.1\.101:8000\)/],
    ["http://3232235877:8000/v1/blobs", /the worker agent of machine gpu-01/],
    ["http://GPU-02.lan.:8000/v1/blobs", /the worker agent of machine gpu-02/],
  ])("refuses %s", (url, why) => {
    expect(p.checkUrl(url)).toMatch(why);
  });

  it.each([
    "http://127.0.0.1:9000/hook",
    "http://localhost:9000/hook",
    "http://[::1]:9000/hook",
    "http://192.168.1.20:8101/hook",
    "http://192.168.1.101:9000/hook",
    "http://10.1.2.3/hook",
    `http://${LAN_ADDRESS}:9000/hook`,
    "https://hooks.example.com/x?token=1",
    "http://user:pass@hooks.example.com/",
    // Names are judged again when dialled: only the connection can tell what they are.
    "http://metadata.example.com/",
  ])("allows %s", (url) => {
    expect(p.checkUrl(url)).toBeUndefined();
  });

  it("refuses what is not an http(s) URL", () => {
    expect(p.checkUrl("ftp://example.com/")).toMatch(/http:\/\/ or https:\/\//);
    expect(p.checkUrl("not a url")).toMatch(/http:\/\/ or https:\/\//);
  });
});

describe("callback address policy at connect", () => {
  const p = policy();
  it.each([
    ["169.254.169.254", 80, /cloud metadata/],
    ["::ffff:169.254.169.254", 80, /cloud metadata address \(169\.254\.169\.254\)/],
    ["fe80::1%eth0", 80, /link-local/],
    ["0.0.0.0", 80, /unspecified/],
    ["::", 80, /unspecified/],
    ["127.0.0.1", GATEWAY_PORT, /the gateway itself/],
    ["::1", GATEWAY_PORT, /the gateway itself/],
    [LAN_ADDRESS, GATEWAY_PORT, /the gateway itself/],
    ["192.168.1.101", 8000, /the worker agent of machine gpu-01/],
    ["::ffff:192.168.1.101", 8000, /the worker agent of machine gpu-01/],
  ])("refuses %s port %d", (address, port, why) => {
    expect(p.checkAddress(address, port, "rebound.example.com")).toMatch(why);
  });

  it.each([
    ["127.0.0.1", 9000],
    ["::1", 9000],
    ["192.168.1.20", GATEWAY_PORT],
    ["10.0.0.7", 443],
    ["2001:db8::1", 443],
  ])("allows %s port %d", (address, port) => {
    expect(p.checkAddress(address, port, "hooks.example.com")).toBeUndefined();
  });

  it("refuses a machine's worker agent dialled by the name machines.json gives it", () => {
    expect(p.checkAddress("192.168.1.102", 8000, "gpu-02.lan")).toMatch(/worker agent of machine gpu-02/);
    expect(p.checkAddress("192.168.1.102", 9000, "gpu-02.lan")).toBeUndefined();
  });

  it("the gateway's own ports are read at each check, so a port known only after listening counts", () => {
    const ports: number[] = [];
    const late = new AddressPolicy({ ownPorts: () => ports, localAddresses: () => [] });
    expect(late.checkAddress("127.0.0.1", 5555, "x")).toBeUndefined();
    ports.push(5555);
    expect(late.checkAddress("127.0.0.1", 5555, "x")).toMatch(/gateway itself/);
  });
});

describe("--callback-allow", () => {
  const p = policy(["10.0.0.0/8", "hooks.example.com", "*.example.org", "fd12::/16"]);

  it("allows only listed networks, names and domains", () => {
    expect(p.checkUrl("http://10.2.3.4/hook")).toBeUndefined();
    expect(p.checkUrl("https://hooks.example.com/hook")).toBeUndefined();
    expect(p.checkUrl("https://HOOKS.example.com./hook")).toBeUndefined();
    expect(p.checkUrl("https://a.b.example.org/hook")).toBeUndefined();
    expect(p.checkUrl("http://[fd12::5]/hook")).toBeUndefined();
    expect(p.checkUrl("http://192.168.1.1/hook")).toMatch(/not among the gateway's allowed/);
    expect(p.checkUrl("http://127.0.0.1:9000/hook")).toMatch(/not among the gateway's allowed/);
    expect(p.checkUrl("http://[fd13::5]/hook")).toMatch(/not among/);
  });

  it("judges an unlisted name by the addresses it resolves to", () => {
    // With networks in the list, a name may resolve into one: only the connection can tell.
    expect(p.checkUrl("https://other.example.com/hook")).toBeUndefined();
    expect(p.checkAddress("10.9.9.9", 443, "other.example.com")).toBeUndefined();
    expect(p.checkAddress("192.168.1.1", 443, "other.example.com")).toMatch(/not among/);
    // A listed name may resolve anywhere, short of the refused addresses.
    expect(p.checkAddress("192.168.1.1", 443, "hooks.example.com")).toBeUndefined();
    expect(p.checkAddress("169.254.169.254", 443, "hooks.example.com")).toMatch(/cloud metadata/);
  });

  it("with names only, an unlisted name is refused at submit", () => {
    const names = policy(["hooks.example.com"]);
    expect(names.checkUrl("https://other.example.com/")).toMatch(/not among.*other\.example\.com/);
  });

  it("never lets the refused addresses through, even when listed", () => {
    const wide = policy(["0.0.0.0/0", "::/0"]);
    expect(wide.checkUrl("http://169.254.169.254/")).toMatch(/cloud metadata/);
    expect(wide.checkUrl("http://127.0.0.1:8101/")).toMatch(/gateway itself/);
    expect(wide.checkUrl("http://10.0.0.1/")).toBeUndefined();
  });

  it("rejects entries that are none of host, *.domain, address or CIDR", () => {
    expect(parseAllowList(["10.0.0.0/33"])).toEqual({ bad: "10.0.0.0/33" });
    expect(parseAllowList(["http://x"])).toEqual({ bad: "http://x" });
    expect(parseAllowList(["a b"])).toEqual({ bad: "a b" });
    expect("list" in parseAllowList(["::1", "10.0.0.1", "Hooks.Example.com", "*.x.org"])).toBe(true);
  });
});
