/** A message of a text/event-stream, as EventSource would dispatch it. */
export interface ReadMessage {
  /** `message` when the stream named none. */
  event: string;
  data: string;
  /** The stream's last event id after this message (ids persist until changed, as in the spec). */
  lastEventId: string;
}

/**
 * Parses a Server-Sent Events body (HTML Living Standard, "Parsing an event stream") for clients
 * that cannot use EventSource: Node, and browsers that must send an Authorization header.
 */
export async function* readEventStream(body: AsyncIterable<Uint8Array>): AsyncGenerator<ReadMessage> {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let lastEventId = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\r")) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(buffer.startsWith("\r\n", end) ? end + 2 : end + 1);
      if (line === "") {
        if (data.length > 0) yield { event: event || "message", data: data.join("\n"), lastEventId };
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) lastEventId = value;
    }
  }
}
