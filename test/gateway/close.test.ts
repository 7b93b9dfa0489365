import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { GateEngine } from "../helpers/gate-engine.js";
import { removeDir, startLocalWorker, startTestGateway, tempDir } from "../helpers/gateway.js";

/** A TCP client that connects and never sends a byte; resolves with a promise of its end. */
async function silentClient(port: number): Promise<{ ended: Promise<unknown>; destroyed: () => boolean }> {
  const socket = connect(port, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  return {
    ended: new Promise((resolve) => socket.once("close", resolve)),
    destroyed: () => socket.destroyed,
  };
}

describe("closing a server", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await removeDir(dir);
  });

  it("the gateway is not held open by a client that connected and never sent a byte", async () => {
    const gateway = await startTestGateway();
    dir = gateway.dataDir;
    const silent = await silentClient(gateway.port);
    await gateway.close();
    await silent.ended;
    expect(silent.destroyed()).toBe(true);
  });

  it("nor is a worker agent", async () => {
    dir = await tempDir();
    const worker = await startLocalWorker(dir, new GateEngine(1));
    const silent = await silentClient(worker.port);
    await worker.close();
    await silent.ended;
    expect(silent.destroyed()).toBe(true);
  });
});
