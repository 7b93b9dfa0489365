import { isIPv4, isIPv6 } from "node:net";

/**
 * IP addresses as 16 bytes, IPv4 as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`), so one prefix
 * match covers both families and `::ffff:169.254.169.254` is caught as what it is.
 */
export type IpBytes = readonly number[];

/** An address text as `net` or a URL's hostname gives it (IPv6 with or without brackets); undefined if not an IP. */
export function parseIp(text: string): IpBytes | undefined {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  // A zone id (fe80::1%eth0) names an interface, not part of the address.
  const address = bare.split("%")[0] ?? "";
  if (isIPv4(address)) return [...V4_MAPPED_PREFIX, ...v4Bytes(address)];
  if (isIPv6(address)) return v6Bytes(address);
  return undefined;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function v4Bytes(address: string): number[] {
  return address.split(".").map(Number);
}

function v6Bytes(address: string): number[] {
  let text = address;
  let tail: number[] = [];
  // A trailing dotted quad (::ffff:1.2.3.4) is the last 32 bits.
  const lastColon = text.lastIndexOf(":");
  const last = text.slice(lastColon + 1);
  if (last.includes(".")) {
    tail = v4Bytes(last);
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = "", rest] = text.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const before = groups(head);
  const after = rest === undefined ? [] : groups(rest);
  const zeros = new Array<number>(8 - before.length - after.length).fill(0);
  const words = [...before, ...(rest === undefined ? [] : zeros), ...after];
  const bytes = words.flatMap((w) => [w >> 8, w & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, or undefined for a true IPv6 address. */
export function mappedV4(bytes: IpBytes): string | undefined {
  return startsWith(bytes, V4_MAPPED_PREFIX) ? bytes.slice(12).join(".") : undefined;
}

/** A network: the first `bits` bits of `bytes`. */
export interface Cidr {
  readonly bytes: IpBytes;
  readonly bits: number;
}

/** `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128); undefined when it is neither. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  const bytes = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!bytes) return undefined;
  const v4 = mappedV4(bytes) !== undefined;
  const max = v4 ? 32 : 128;
  const bitsText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  if (bits > max) return undefined;
  return { bytes, bits: v4 ? bits + 96 : bits };
}

export function inCidr(bytes: IpBytes, cidr: Cidr): boolean {
  for (let bit = 0; bit < cidr.bits; bit += 8) {
    const take = Math.min(8, cidr.bits - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    const i = bit / 8;
    if (((bytes[i] ?? 0) & mask) !== ((cidr.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

function startsWith(bytes: IpBytes, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

export function sameIp(a: IpBytes, b: IpBytes): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The canonical text of an address, for messages: dotted IPv4 for mapped addresses. */
export function formatIp(bytes: IpBytes): string {
  const v4 = mappedV4(bytes);
  if (v4 !== undefined) return v4;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return words.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}
