import { type Cidr, parseCidr } from "./ip-address.js";

/** `--callback-allow`, parsed: CIDRs and addresses, host names, and `*.domain` wildcards. */
export interface AllowList {
  readonly networks: readonly Cidr[];
  readonly hosts: readonly string[];
  readonly domains: readonly string[];
}

/** Checks an allow list's entries; the first entry that is none of the three is returned as `bad`. */
export function parseAllowList(entries: readonly string[]): { list: AllowList } | { bad: string } {
  const networks: Cidr[] = [];
  const hosts: string[] = [];
  const domains: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    const cidr = parseCidr(entry);
    if (cidr) networks.push(cidr);
    else if (entry.startsWith("*.") && HOST_NAME.test(entry.slice(2)))
      domains.push(normalHost(entry.slice(2)));
    else if (HOST_NAME.test(entry)) hosts.push(normalHost(entry));
    else return { bad: raw };
  }
  return { list: { networks, hosts, domains } };
}

export const HOST_NAME =
  /^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/;

/** A host name as compared: lower case, without the trailing dot of a fully qualified name. */
export function normalHost(host: string): string {
  return host.toLowerCase().replace(/\.+$/, "");
}
