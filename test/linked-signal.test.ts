import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { linkSignals } from "../src/linked-signal.js";

describe("linkSignals", () => {
  it("aborts with the reason of the first source that aborts, and only then", () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkSignals([a.signal, b.signal]);
    expect(linked.signal.aborted).toBe(false);
    const reason = new Error("b went");
    b.abort(reason);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe(reason);
    a.abort(new Error("a went later"));
    expect(linked.signal.reason).toBe(reason);
  });

  it("is aborted at once when a source already is", () => {
    const a = new AbortController();
    a.abort("gone before");
    const linked = linkSignals([new AbortController().signal, a.signal]);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe("gone before");
  });

  it("no longer follows its sources once disposed", () => {
    const a = new AbortController();
    const linked = linkSignals([a.signal]);
    linked.dispose();
    a.abort();
    expect(linked.signal.aborted).toBe(false);
  });

  it("leaves nothing on a long-lived source after many links come and go (AbortSignal.any does)", () => {
    const shutdown = new AbortController();
    for (let i = 0; i < 1000; i++) {
      const linked = linkSignals([shutdown.signal, new AbortController().signal]);
      linked.dispose();
    }
    // And one that ended by aborting, which disposes of itself.
    const own = new AbortController();
    linkSignals([shutdown.signal, own.signal]);
    own.abort();
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
    // The leak this replaces, kept in view: Node 20 keeps one entry per call in the source.
    const dependants = Object.getOwnPropertySymbols(shutdown.signal).find(
      (s) => s.description === "kDependantSignals",
    );
    if (dependants !== undefined) {
      const held = () => (shutdown.signal as unknown as Record<symbol, Set<unknown>>)[dependants]?.size ?? 0;
      expect(held()).toBe(0);
    }
  });

  it("lets a long-lived source carry hundreds of links without Node's leak warning (each is removed)", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const shutdown = new AbortController();
      const links = Array.from({ length: 200 }, () =>
        linkSignals([shutdown.signal, new AbortController().signal]),
      );
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain("MaxListenersExceededWarning");
      for (const link of links) link.dispose();
      shutdown.abort();
      expect(links.every((l) => !l.signal.aborted)).toBe(true);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
