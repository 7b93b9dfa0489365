import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AddressPolicy } from "../../../src/gateway/callbacks/address-policy.js";
import { CallbackSender } from "../../../src/gateway/callbacks/callback-sender.js";
import { guardedAgent } from "../../../src/gateway/callbacks/guarded-agent.js";
import { systemClock } from "../../../src/gateway/clock.js";
import { createLogger } from "../../../src/logger.js";
import { removeDir, tempDir } from "../../helpers/gateway.js";
import { type Receiver, startReceiver } from "../../helpers/receiver.js";
import { newTask, openTestStore, type TestStore } from "../../helpers/store.js";
import { until } from "../../helpers/until.js";

describe("the callback sender", () => {
  let dir: string;
  let s: TestStore;
  let receiver: Receiver;

  beforeEach(async () => {
    dir = await tempDir("mh-sender-");
    s = await openTestStore(dir);
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await s.close();
    await receiver.close();
    await removeDir(dir);
  });

  it("with every slot taken, waits for a try to end instead of waking at once for rows it cannot start", async () => {
    for (let i = 0; i < 12; i++) await s.tasks.createTask(newTask({ callbackUrl: receiver.url }));
    let wakeQueries = 0;
    const nextDue = s.callbacks.nextCallbackDue.bind(s.callbacks);
    s.callbacks.nextCallbackDue = (busy) => {
      wakeQueries++;
      return nextDue(busy);
    };
    const agent = guardedAgent(new AddressPolicy({ ownPorts: () => [] }));
    const sender = new CallbackSender({
      clock: systemClock,
      store: s.tasks,
      deliveries: s.callbacks,
      logger: createLogger({ level: "silent", format: "json" }),
      dispatcher: agent,
      maxTries: 8,
      retryFirstDelayMs: 5000,
      timeoutMs: 10_000,
      signingKey: undefined,
      publicUrl: "http://127.0.0.1:8101",
      concurrency: 1,
    });
    sender.start();
    try {
      await until(() => receiver.received.length === 12);
      const settled = await until(async () => {
        const rows = await s.db.selectFrom("callbacks").select("state").execute();
        return rows.every((r) => r.state === "delivered") && rows;
      });
      expect(settled).toHaveLength(12);
      // One look for the next retry once nothing is left; a sender that armed a timer while at
      // capacity woke at once, over and over, for the whole run (hundreds of queries).
      expect(wakeQueries).toBeLessThanOrEqual(3);
    } finally {
      await sender.close();
      await agent.close();
    }
  });
});
