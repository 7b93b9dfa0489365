import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from "node:dns";
import { isIP, type Socket } from "node:net";
import { Agent, buildConnector } from "undici";
import type { AddressPolicy } from "./address-policy.js";

/** What `net.connect` accepts as `lookup`, narrowed to the two shapes it calls. */
export type Lookup = (
  hostname: string,
  options: LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemLookup: Lookup = (hostname, options, callback) => dnsLookup(hostname, options, callback);

/** A connection the address policy refused; never worth a retry (the sender gives up at once). */
export class CallbackRefusedError extends Error {
  readonly code = "CALLBACK_REFUSED";
  constructor(message: string) {
    super(message);
    this.name = "CallbackRefusedError";
  }
}

/**
 * An undici dispatcher that only dials what `policy` allows: a name is resolved here, every
 * address it resolves to is checked (one forbidden address refuses the name, so an answer mixing a
 * LAN address with a metadata one gets nowhere) and the checked address itself is dialled; a
 * literal address is checked as it is; and the socket's peer is checked again once connected,
 * before a byte of the request is written. Redirects are never followed (undici's `request` does not), so a receiver
 * cannot bounce the POST elsewhere either.
 */
export function guardedAgent(policy: AddressPolicy, options: { lookup?: Lookup | undefined } = {}): Agent {
  const resolve = options.lookup ?? systemLookup;
  const connect = buildConnector({});
  return new Agent({
    // A fresh connection per delivery: a kept-alive socket would skip the checks the next time.
    pipelining: 0,
    connect: (opts, callback) => {
      const hostname = opts.hostname.replace(/^\[|\]$/g, "");
      const port = Number(opts.port) || (opts.protocol === "https:" ? 443 : 80);
      const refuse = (why: string) => callback(new CallbackRefusedError(why), null);
      // Dials exactly the address that was checked; `host` stays the URL's, so TLS still sends
      // and verifies the name (SNI, certificate) and no second resolution can differ.
      const dial = (address: string) =>
        connect({ ...opts, hostname: address }, (err, socket) => {
          if (err || !socket) return callback(err ?? new Error("no socket"), null);
          const peer = (socket as Socket).remoteAddress;
          const why = peer ? policy.checkAddress(peer, port, hostname) : "the connection has no peer address";
          if (why === undefined) return callback(null, socket);
          socket.destroy();
          refuse(why);
        });
      if (isIP(hostname)) {
        const why = policy.checkAddress(hostname, port, hostname);
        return why === undefined ? dial(hostname) : refuse(why);
      }
      resolve(hostname, { all: true }, (err, addresses) => {
        if (err) return callback(err, null);
        for (const { address } of addresses) {
          const why = policy.checkAddress(address, port, hostname);
          if (why) return refuse(`${why}, which ${hostname} resolves to`);
        }
        const first = addresses[0];
        if (!first) return callback(new Error(`${hostname} has no address`), null);
        dial(first.address);
      });
    },
  });
}
