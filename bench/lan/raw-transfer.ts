import { once } from "node:events";
import { createReadStream } from "node:fs";
import { connect } from "node:net";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import type { Child, Scope } from "../harness.js";
import type { Lan } from "./netns.js";

/**
 * The link's own ceiling: a file sent over a bare TCP connection (no HTTP, no hashing, no disk on
 * the far side) from the bench to a sink on another host, so the product's figures can be read
 * against what the shaped link gives at all.
 */

const SINK = fileURLToPath(new URL("./tcp-sink.js", import.meta.url));
const SINK_PORT = 9000;

export function startTcpSink(scope: Scope, lan: Lan, hostName: string): Promise<Child> {
  const host = lan.host(hostName);
  return scope.startNode(`tcp-sink-${hostName}`, SINK, [host.address, String(SINK_PORT)], {
    readyMessage: "tcp sink listening",
    ...(host.netns ? { netns: host.netns } : {}),
  });
}

/** Connect, stream the file, half-close, wait for the sink's count: milliseconds end to end. */
export async function sendRaw(sink: Child, path: string): Promise<{ ms: number; bytes: number }> {
  const { hostname, port } = new URL(sink.url);
  const t0 = performance.now();
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  await once(socket, "connect");
  const answer = (async () => {
    let text = "";
    for await (const chunk of socket) text += String(chunk);
    return Number(text.trim());
  })();
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), socket, { end: true });
  const bytes = await answer;
  return { ms: performance.now() - t0, bytes };
}
