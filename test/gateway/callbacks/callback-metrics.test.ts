import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { removeDir, startTestGateway, taskForm, tempDir } from "../../helpers/gateway.js";
import { makeAudio, makeVideo } from "../../helpers/media.js";
import { sampleValue, scrape } from "../../helpers/prometheus.js";
import { type Receiver, startReceiver } from "../../helpers/receiver.js";
import { until } from "../../helpers/until.js";

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

it("counts failed callback tries by reason on /metrics", async () => {
  const dir = await tempDir();
  cleanup.push(() => removeDir(dir));
  const receiver: Receiver = await startReceiver(() => 500);
  cleanup.push(() => receiver.close());
  const gateway = await startTestGateway({ callbackTries: "3", callbackRetry: "20" }, join(dir, "gw"));
  cleanup.push(() => gateway.close());
  await makeAudio(join(dir, "a.wav"), { seconds: 1 });
  await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
  const res = await fetch(`${gateway.url}/tasks`, {
    method: "POST",
    body: await taskForm({
      audio: { path: join(dir, "a.wav") },
      video: { path: join(dir, "v.mp4") },
      callback_url: receiver.url,
    }),
  });
  expect(res.status).toBe(200);

  // Each of the task's status changes is tried 3 times and given up: all tries answered 500.
  const failed = await until(async () => {
    const s = await scrape(gateway.url);
    const given = sampleValue(s, "multi_heygem_callback_deliveries", { state: "given_up" });
    const pending = sampleValue(s, "multi_heygem_callback_deliveries", { state: "pending" });
    return given !== undefined && given >= 1 && pending === 0 && s;
  }, 20_000);
  const tries = receiver.received.length;
  expect(tries).toBeGreaterThanOrEqual(3);
  expect(sampleValue(failed, "multi_heygem_callback_tries_failed_total", { reason: "http_status" })).toBe(
    tries,
  );
  expect(sampleValue(failed, "multi_heygem_callback_tries_failed_total", { reason: "timeout" }) ?? 0).toBe(0);
});
