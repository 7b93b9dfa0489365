import { isIP } from "node:net";

/**
 * Loopback, as the gateway's open mode and the worker's start-up check need it: only this machine
 * can reach it. `::ffff:127.x.x.x` is how a dual-stack socket shows an IPv4 loopback peer.
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.startsWith("127.");
  return address === "::1" || address === "0:0:0:0:0:0:0:1";
}

/**
 * Whether listening on `host` keeps a server to this machine. A host name other than `localhost`
 * counts as reachable from the network: what it resolves to can change after the check.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return bare.toLowerCase() === "localhost" || isLoopbackAddress(bare);
}
