import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { processAlive } from "../harness.js";
import type { LinkCount, Traffic } from "./traffic.js";

/**
 * A LAN on one machine (issue 14): every host in a network namespace of its own, each joined to
 * one Linux bridge (in a "switch" namespace) by a veth pair whose two ends are shaped with a token
 * bucket (`tc … tbf`): the host end limits what the host sends, the switch end what it receives,
 * so each host has a full-duplex link of the given rate, as on a switched Ethernet.
 *
 * The client is the bench process itself: its end of the veth stays in the initial namespace
 * (where the bench runs), so the benchmark's client code runs in-process and reaches every host
 * through its own shaped link, like any other host. Every other host is a namespace.
 *
 * Needs root (CAP_NET_ADMIN) and iproute2. Names carry the bench's pid, so two runs never clash,
 * and a run that died without tearing down (kill -9) leaves names that the next run removes first.
 */

const exec = promisify(execFile);

const PREFIX = "mhl";
/** The host whose end stays in the initial namespace: the bench process. */
export const CLIENT = "client";
const GATEWAY_OCTET = 2;

export interface LanHost {
  readonly name: string;
  readonly address: string;
  /** Its namespace; undefined for the client (the initial namespace, the bench itself). */
  readonly netns: string | undefined;
}

async function ip(...args: string[]): Promise<string> {
  return (await exec("ip", args)).stdout;
}

async function tc(...args: string[]): Promise<string> {
  return (await exec("tc", args)).stdout;
}

/**
 * Why no LAN can be built here, or undefined when it can: the benchmark then reports this instead
 * of failing the whole run.
 */
export async function lanUnavailable(): Promise<string | undefined> {
  if (process.platform !== "linux") return `needs Linux network namespaces; this is ${process.platform}`;
  if (process.getuid?.() !== 0) {
    return "needs root: it builds a LAN of network namespaces, veth pairs and tc token buckets (run `sudo npm run bench`)";
  }
  try {
    await exec("tc", ["-V"]);
    await exec("ip", ["netns", "list"]);
  } catch (err) {
    return `needs iproute2's ip and tc: ${err instanceof Error ? err.message : String(err)}`;
  }
  // Root in a container without CAP_NET_ADMIN cannot make a namespace either: try one.
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    await exec("ip", ["netns", "add", probe]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return `needs root with CAP_NET_ADMIN to create network namespaces (ip netns add said: ${stderr || String(err)})`;
  } finally {
    await exec("ip", ["netns", "del", probe]).catch(() => undefined);
  }
  return undefined;
}

/** Namespaces and root-side links left by bench runs that are no longer running. */
async function removeLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const dead = (name: string, pattern: RegExp) => {
    const pid = Number(pattern.exec(name)?.[1] ?? Number.NaN);
    return Number.isInteger(pid) && pid !== process.pid && !processAlive(pid);
  };
  for (const line of (await ip("netns", "list")).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    if (dead(name, new RegExp(`^${PREFIX}(\\d+)-`))) {
      await ip("netns", "del", name).catch(() => undefined);
      removed.push(name);
    }
  }
  const links = JSON.parse(await ip("-j", "link", "show")) as Array<{ ifname: string }>;
  for (const { ifname } of links) {
    if (dead(ifname, new RegExp(`^${PREFIX}(\\d+)c$`))) {
      await ip("link", "del", ifname).catch(() => undefined);
      removed.push(ifname);
    }
  }
  return removed;
}

/** A /24 in 10.231.0.0/16 that no route of this machine covers yet (other than the default). */
async function freeSubnet(): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const third = 20 + ((process.pid + i) % 200);
    const routes = JSON.parse(await ip("-j", "route", "show", "to", "match", `10.231.${third}.1`)) as Array<{
      dst: string;
    }>;
    if (routes.every((r) => r.dst === "default")) return `10.231.${third}`;
  }
  throw new Error("no free /24 in 10.231.0.0/16 for the bench LAN");
}

/** tbf's bucket: at least two 64 KB GSO segments (or tbf splits them), at least 2 ms of the rate. */
function burstBytes(mbit: number): number {
  return Math.max(128 * 1024, Math.round((mbit * 1e6) / 8 / 500));
}

function tbf(mbit: number): string[] {
  return ["tbf", "rate", `${mbit}mbit`, "burst", String(burstBytes(mbit)), "latency", "50ms"];
}

/**
 * One end of a link: a token bucket at the link's rate (handle 1:), and under it, only to count,
 * an HTB (handle 2:) whose class 2:1 takes IP packets shorter than 128 bytes (u32 on the IPv4
 * total length) and 2:2 the rest, both far faster than the link so that they never shape.
 */
async function shapeEnd(netns: string | undefined, dev: string, mbit: number): Promise<void> {
  const t = (...args: string[]) => (netns ? tc("-n", netns, ...args) : tc(...args));
  await t("qdisc", "add", "dev", dev, "root", "handle", "1:", ...tbf(mbit));
  await t("qdisc", "add", "dev", dev, "parent", "1:1", "handle", "2:", "htb", "default", "2");
  for (const minor of ["1", "2"]) {
    await t(
      "class",
      "add",
      "dev",
      dev,
      "parent",
      "2:",
      "classid",
      `2:${minor}`,
      "htb",
      "rate",
      "40gbit",
      "quantum",
      "200000",
    );
  }
  await t(
    "filter",
    "add",
    "dev",
    dev,
    "parent",
    "2:",
    "protocol",
    "ip",
    "prio",
    "1",
    "u32",
    "match",
    "u16",
    "0x0000",
    "0xff80",
    "at",
    "2",
    "flowid",
    "2:1",
  );
}

/** `tc -s` output of one end: every byte (the HTB's totals) and the small ones (class 2:1). */
async function readEnd(netns: string | undefined, dev: string): Promise<Traffic> {
  const t = (...args: string[]) => (netns ? tc("-n", netns, ...args) : tc(...args));
  const sent = (text: string, head: RegExp) => {
    const m = new RegExp(`${head.source}[^\\n]*\\n\\s*Sent (\\d+) bytes (\\d+) pkt`).exec(text);
    if (!m) throw new Error(`tc: no counters for ${dev}${netns ? ` in ${netns}` : ""}: ${text}`);
    return { bytes: Number(m[1]), frames: Number(m[2]) };
  };
  const all = sent(await t("-s", "qdisc", "show", "dev", dev), /qdisc htb 2:/);
  const small = sent(await t("-s", "class", "show", "dev", dev), /class htb 2:1 /);
  return { bytes: all.bytes, frames: all.frames, smallBytes: small.bytes, smallFrames: small.frames };
}

const registered = new Set<Lan>();
process.once("exit", () => {
  for (const lan of registered) lan.destroySync();
});

export class Lan {
  private destroyed = false;

  private constructor(
    private readonly tag: string,
    readonly hosts: ReadonlyMap<string, LanHost>,
    private rate: number,
  ) {}

  /** The namespace holding the bridge and the switch ends of the veths. */
  private get switchNs(): string {
    return `${this.tag}-sw`;
  }

  private get clientLink(): string {
    return `${this.tag}c`;
  }

  /** Link rate in Mbit/s. */
  get mbit(): number {
    return this.rate;
  }

  host(name: string): LanHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} on this LAN`);
    return h;
  }

  /**
   * Builds the LAN: `client` (the bench process) plus the named hosts, `gateway` first if present.
   * Leftovers of dead runs are removed before. On failure, whatever was built is removed again.
   */
  static async create(names: readonly string[], mbit: number): Promise<{ lan: Lan; removed: string[] }> {
    const removed = await removeLeftovers();
    const tag = `${PREFIX}${process.pid}`;
    const subnet = await freeSubnet();
    const hosts = new Map<string, LanHost>();
    hosts.set(CLIENT, { name: CLIENT, address: `${subnet}.1`, netns: undefined });
    let next = GATEWAY_OCTET;
    for (const name of names) {
      if (!/^[a-z][a-z0-9]{0,11}$/.test(name) || hosts.has(name)) throw new Error(`bad host name ${name}`);
      hosts.set(name, { name, address: `${subnet}.${next++}`, netns: `${tag}-${name}` });
    }
    const lan = new Lan(tag, hosts, mbit);
    registered.add(lan);
    try {
      await lan.build();
    } catch (err) {
      await lan.destroy();
      throw err;
    }
    return { lan, removed };
  }

  private async build(): Promise<void> {
    const sw = this.switchNs;
    await ip("netns", "add", sw);
    await ip("-n", sw, "link", "add", "br0", "type", "bridge");
    await ip("-n", sw, "link", "set", "br0", "up");
    for (const h of this.hosts.values()) {
      const port = `p-${h.name}`;
      if (h.netns === undefined) {
        await ip("link", "add", this.clientLink, "type", "veth", "peer", "name", port, "netns", sw);
        await ip("addr", "add", `${h.address}/24`, "dev", this.clientLink);
        await ip("link", "set", this.clientLink, "up");
      } else {
        await ip("netns", "add", h.netns);
        await ip("-n", h.netns, "link", "set", "lo", "up");
        await ip("link", "add", "eth0", "netns", h.netns, "type", "veth", "peer", "name", port, "netns", sw);
        await ip("-n", h.netns, "addr", "add", `${h.address}/24`, "dev", "eth0");
        await ip("-n", h.netns, "link", "set", "eth0", "up");
      }
      await ip("-n", sw, "link", "set", port, "master", "br0", "up");
      await shapeEnd(h.netns, h.netns ? "eth0" : this.clientLink, this.rate);
      await shapeEnd(sw, port, this.rate);
    }
  }

  /** Sets every link (both ends) to `mbit` Mbit/s; takes effect for the next packets. */
  async setRate(mbit: number): Promise<void> {
    for (const h of this.hosts.values()) {
      const dev = h.netns ? "eth0" : this.clientLink;
      const change = ["qdisc", "change", "dev", dev, "root", "handle", "1:", ...tbf(mbit)];
      await (h.netns ? tc("-n", h.netns, ...change) : tc(...change));
      await tc(
        "-n",
        this.switchNs,
        "qdisc",
        "change",
        "dev",
        `p-${h.name}`,
        "root",
        "handle",
        "1:",
        ...tbf(mbit),
      );
    }
    this.rate = mbit;
  }

  /** Every host's link counters now (cumulative since the LAN was built). */
  async counters(): Promise<Map<string, LinkCount>> {
    const hosts = [...this.hosts.values()];
    const counts = await Promise.all(
      hosts.map(async (h) => {
        const [sent, received] = await Promise.all([
          readEnd(h.netns, h.netns ? "eth0" : this.clientLink),
          readEnd(this.switchNs, `p-${h.name}`),
        ]);
        return [h.name, { sent, received }] as const;
      }),
    );
    return new Map(counts);
  }

  /** Removes every namespace and link of this LAN (processes inside must be gone first). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    registered.delete(this);
    await ip("link", "del", this.clientLink).catch(() => undefined);
    for (const h of this.hosts.values())
      if (h.netns) await ip("netns", "del", h.netns).catch(() => undefined);
    await ip("netns", "del", this.switchNs).catch(() => undefined);
  }

  /** The same, at process exit (Ctrl-C, a crash): nothing asynchronous runs then. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const quiet = (args: string[]) => {
      try {
        execFileSync("ip", args, { stdio: "ignore" });
      } catch {
        // already gone
      }
    };
    quiet(["link", "del", this.clientLink]);
    for (const h of this.hosts.values()) if (h.netns) quiet(["netns", "del", h.netns]);
    quiet(["netns", "del", this.switchNs]);
  }
}
