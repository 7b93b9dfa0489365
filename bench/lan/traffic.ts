/**
 * Bytes on the bench LAN's links, as its shapers count them (netns.ts), and what they carried of
 * TCP payload.
 */

/**
 * What one direction of a link carried, as the shaper counts it: Ethernet frames (header
 * included; no preamble, FCS or gap), a GSO segment counted as the frames it becomes on a wire.
 * "Small" frames are IP packets under 128 bytes: pure TCP ACKs, SYNs and FINs, nothing that
 * carries more than a few bytes of data.
 */
export interface Traffic {
  readonly bytes: number;
  readonly frames: number;
  readonly smallBytes: number;
  readonly smallFrames: number;
}

/** One host's link: what it sent into the LAN and what it received from it. */
export interface LinkCount {
  readonly sent: Traffic;
  readonly received: Traffic;
}

/** Ethernet (14) + IPv4 (20) + TCP with timestamps (32), Linux's default: the headers of a data frame. */
export const FRAME_HEADER_BYTES = 66;

/** The TCP payload in `t`: the frames that carry data, less their headers. */
export function tcpPayload(t: Traffic): number {
  return t.bytes - t.smallBytes - FRAME_HEADER_BYTES * (t.frames - t.smallFrames);
}

export function minus(a: Traffic, b: Traffic): Traffic {
  return {
    bytes: a.bytes - b.bytes,
    frames: a.frames - b.frames,
    smallBytes: a.smallBytes - b.smallBytes,
    smallFrames: a.smallFrames - b.smallFrames,
  };
}

export function linkDelta(after: LinkCount, before: LinkCount | undefined): LinkCount {
  const zero = { bytes: 0, frames: 0, smallBytes: 0, smallFrames: 0 };
  return {
    sent: minus(after.sent, before?.sent ?? zero),
    received: minus(after.received, before?.received ?? zero),
  };
}
