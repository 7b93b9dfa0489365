import { networkInterfaces } from "node:os";
import { type AllowList, normalHost } from "../../http/allow-list.js";
import {
  type Cidr,
  formatIp,
  type IpBytes,
  inCidr,
  mappedV4,
  parseCidr,
  parseIp,
  sameIp,
} from "../../http/ip-address.js";

/**
 * Where a callback may be sent (issue 9, "No SSRF"). Checked twice: on the callback_url's text when
 * a task is submitted (`checkUrl`), and on every address the connection actually dials
 * (`checkAddress`, from guarded-agent.ts), so a name that resolves, or later re-resolves, to a
 * forbidden address gets nowhere.
 *
 * Always refused: unspecified, link-local, cloud metadata, multicast, broadcast and reserved
 * addresses, the gateway itself (its own port, and its embedded worker's, on any local address)
 * and the fleet's worker agents (by the host and port in machines.json). Loopback and LAN
 * addresses are allowed otherwise, because receivers live there (the seed's async client posts to
 * a receiver on the same box). An allow list narrows the rest.
 */
export interface AddressPolicyOptions {
  /** `--callback-allow`; undefined allows every destination that is not refused. */
  readonly allow?: AllowList | undefined;
  /** The ports this process listens on (the API, an embedded worker); read at each check. */
  readonly ownPorts: () => readonly number[];
  /** This machine's addresses; the default reads the network interfaces. */
  readonly localAddresses?: () => readonly string[];
  /**
   * The fleet's worker agents, read at each check: a callback must not be a way to reach their
   * job and blob routes from inside the network.
   */
  readonly machines?: () => ReadonlyArray<{
    readonly name: string;
    readonly host: string;
    readonly port: number;
  }>;
}

const REFUSED_NETWORKS: ReadonlyArray<{ cidr: Cidr; what: string }> = [
  // Metadata first: it sits inside link-local and is the better reason to name.
  ["169.254.169.254", "a cloud metadata address"],
  ["100.100.100.200", "a cloud metadata address"],
  ["fd00:ec2::254", "a cloud metadata address"],
  ["0.0.0.0/8", "an unspecified address"],
  ["::/128", "an unspecified address"],
  ["169.254.0.0/16", "a link-local address"],
  ["fe80::/10", "a link-local address"],
  ["224.0.0.0/4", "a multicast address"],
  ["ff00::/8", "a multicast address"],
  ["255.255.255.255", "the broadcast address"],
  ["240.0.0.0/4", "a reserved address"],
].map(([text, what]) => ({ cidr: cidrOf(text ?? ""), what: what ?? "" }));

const LOOPBACK: readonly Cidr[] = [cidrOf("127.0.0.0/8"), cidrOf("::1")];

/** IPv6 forms that carry an IPv4 address a router may still deliver to: IPv4-compatible and NAT64. */
const EMBEDS_V4: readonly Cidr[] = [cidrOf("::/96"), cidrOf("64:ff9b::/96")];

const METADATA_NAMES = new Set(["metadata.google.internal", "metadata.goog"]);

/** Submit time judges the URL's text; connect time the address dialled. */
type When = "submit" | "connect";

function cidrOf(text: string): Cidr {
  const cidr = parseCidr(text);
  if (!cidr) throw new Error(`bad built-in network ${text}`);
  return cidr;
}

function isLocalhostName(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost");
}

export class AddressPolicy {
  private readonly localAddresses: () => readonly string[];

  constructor(private readonly options: AddressPolicyOptions) {
    this.localAddresses = options.localAddresses ?? interfaceAddresses;
  }

  /**
   * Why a callback_url may not be used, as a sentence for the client; undefined when it may. Names
   * are not resolved here (a resolution now proves nothing about the one at delivery time):
   * literal addresses, localhost and known metadata names are judged now, every name again when
   * it is dialled.
   */
  checkUrl(text: string): string | undefined {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return "callback_url must be an http:// or https:// URL";
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return "callback_url must be an http:// or https:// URL";
    }
    const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
    const host = normalHost(url.hostname);
    if (host === "") return "callback_url has no host";
    if (METADATA_NAMES.has(host)) return `callback_url may not point at a cloud metadata service (${host})`;
    const machine = this.machineAt(host, parseIp(host), port);
    if (machine) return `callback_url may not point at ${machine}`;
    const ip = parseIp(host);
    if (ip) return this.refusal(ip, port, undefined, "submit");
    if (isLocalhostName(host) && this.options.ownPorts().includes(port)) {
      return `callback_url may not point at the gateway itself (${host}:${port})`;
    }
    return this.notAllowed(undefined, host, "submit");
  }

  /**
   * Why `address` (what a connection to `hostname` is about to dial) is refused; undefined when it
   * may be dialled. Called for every address a name resolves to, and for literal addresses.
   */
  checkAddress(address: string, port: number, hostname: string): string | undefined {
    const ip = parseIp(address);
    if (!ip) return `${address} is not an IP address`;
    return this.refusal(ip, port, normalHost(hostname), "connect");
  }

  private refusal(ip: IpBytes, port: number, hostname: string | undefined, when: When): string | undefined {
    const shown = formatIp(ip);
    const lead = when === "submit" ? "callback_url may not point at" : "refused to connect to";
    const judged = [ip, ...embeddedV4(ip)];
    for (const candidate of judged) {
      for (const { cidr, what } of REFUSED_NETWORKS) {
        if (inCidr(candidate, cidr)) return `${lead} ${what} (${shown})`;
      }
    }
    if (this.options.ownPorts().includes(port) && judged.some((c) => this.isLocal(c))) {
      return `${lead} the gateway itself (${shown}:${port})`;
    }
    const machine = this.machineAt(hostname, ip, port);
    if (machine) return `${lead} ${machine}`;
    return this.notAllowed(ip, hostname, when);
  }

  /** The fleet machine at `host` or `ip` and `port`, described; undefined when there is none. */
  private machineAt(host: string | undefined, ip: IpBytes | undefined, port: number): string | undefined {
    for (const machine of this.options.machines?.() ?? []) {
      if (machine.port !== port) continue;
      const name = normalHost(machine.host);
      const machineIp = parseIp(name);
      const same = machineIp && ip ? sameIp(machineIp, ip) : host !== undefined && name === host;
      if (same) return `the worker agent of machine ${machine.name} (${machine.host}:${port})`;
    }
    return undefined;
  }

  private isLocal(ip: IpBytes): boolean {
    if (LOOPBACK.some((cidr) => inCidr(ip, cidr))) return true;
    return this.localAddresses().some((address) => {
      const local = parseIp(address);
      return local !== undefined && sameIp(local, ip);
    });
  }

  /**
   * The allow list: a listed name (or `*.domain`) is allowed whatever it resolves to, short of the
   * refused networks; an address must sit in a listed network. At submit, a name that is not
   * listed passes while the list has networks, since only its resolution can tell.
   */
  private notAllowed(ip: IpBytes | undefined, hostname: string | undefined, when: When): string | undefined {
    const allow = this.options.allow;
    if (!allow) return undefined;
    if (hostname !== undefined && parseIp(hostname) === undefined) {
      if (allow.hosts.includes(hostname)) return undefined;
      if (allow.domains.some((d) => hostname === d || hostname.endsWith(`.${d}`))) return undefined;
    }
    if (ip) {
      if (allow.networks.some((cidr) => inCidr(ip, cidr))) return undefined;
      const shown = formatIp(ip);
      return when === "submit"
        ? `callback_url is not among the gateway's allowed callback destinations (${shown})`
        : `refused to connect to ${shown}: not among the gateway's allowed callback destinations`;
    }
    if (allow.networks.length > 0) return undefined;
    return `callback_url is not among the gateway's allowed callback destinations (${hostname})`;
  }
}

function embeddedV4(ip: IpBytes): IpBytes[] {
  if (mappedV4(ip) !== undefined) return [];
  // ::1 is loopback, not an IPv4-compatible 0.0.0.1.
  if (!EMBEDS_V4.some((cidr) => inCidr(ip, cidr)) || LOOPBACK.some((c) => inCidr(ip, c))) return [];
  const v4 = parseIp(ip.slice(12).join("."));
  return v4 ? [v4] : [];
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((info) => info.address));
}
