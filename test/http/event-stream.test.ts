import { describe, expect, it } from "vitest";
import { EventStream } from "../../src/http/event-stream.js";
import { readEventStream } from "../../src/http/event-stream-reader.js";

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

async function readAll(...parts: string[]) {
  const out = [];
  for await (const m of readEventStream(chunks(...parts))) out.push(m);
  return out;
}

describe("reading an event stream", () => {
  it("parses fields, comments, multi-line data and every line ending, across chunk cuts", async () => {
    const messages = await readAll(
      "retry: 3000\n\n: keep-alive\n\nid: 7\nevent: task\nda",
      'ta: {"a":1}\r\n\r',
      "\ndata: one\ndata: two\r\rid: 9\r\ndata:x\n\n",
    );
    expect(messages).toEqual([
      { event: "task", data: '{"a":1}', lastEventId: "7" },
      { event: "message", data: "one\ntwo", lastEventId: "7" },
      { event: "message", data: "x", lastEventId: "9" },
    ]);
  });

  it("drops a message the stream cut before its blank line", async () => {
    expect(await readAll("data: whole\n\ndata: half")).toEqual([
      { event: "message", data: "whole", lastEventId: "" },
    ]);
  });
});

describe("writing an event stream", () => {
  it("reads back what it wrote", async () => {
    const stream = new EventStream({ maxBufferedBytes: 1 << 20, retryMs: 1000 });
    stream.send({ id: 3, event: "task", data: { text: "line\nbreak" } });
    stream.keepAlive();
    stream.send({ event: "progress", data: 5 });
    stream.close();
    const messages = [];
    for await (const m of readEventStream(stream.body)) messages.push(m);
    expect(messages).toEqual([
      { event: "task", data: '{"text":"line\\nbreak"}', lastEventId: "3" },
      { event: "progress", data: "5", lastEventId: "3" },
    ]);
  });

  it("cuts off a reader that does not keep up instead of buffering without end", () => {
    const stream = new EventStream({ maxBufferedBytes: 64 * 1024, retryMs: 1000 });
    let closed = false;
    stream.onClose(() => {
      closed = true;
    });
    // Nobody reads the body: past the bound the stream gives up on the reader.
    for (let i = 0; i < 1000 && !stream.closed; i++)
      stream.send({ id: i, event: "task", data: "x".repeat(1000) });
    expect(stream.closed).toBe(true);
    expect(closed).toBe(true);
    expect(stream.body.writableLength).toBeLessThan(64 * 1024 + 2000);
  });
});
