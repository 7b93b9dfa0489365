import { describe, expect, it } from "vitest";
import { parseWebhookSecret, webhookHeaders } from "../../src/http/webhook-signature.js";

describe("Standard Webhooks signatures", () => {
  it("match the specification's own example", () => {
    // The test vector of the Standard Webhooks reference libraries.
    const key = parseWebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    expect(key).toBeDefined();
    const headers = webhookHeaders(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}');
    expect(headers).toEqual({
      "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
      "webhook-timestamp": "1614265330",
      "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    });
  });

  it("without a secret, carry the id and the time but no signature", () => {
    expect(webhookHeaders(undefined, "msg_1", 1700000000, "{}")).toEqual({
      "webhook-id": "msg_1",
      "webhook-timestamp": "1700000000",
    });
  });

  it.each([
    ["no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ["not base64", "whsec_not base64!"],
    ["too short a key (16 bytes)", `whsec_${Buffer.alloc(16, 1).toString("base64")}`],
    ["too long a key (65 bytes)", `whsec_${Buffer.alloc(65, 1).toString("base64")}`],
    ["empty", "whsec_"],
  ])("refuse a secret with %s", (_why, secret) => {
    expect(parseWebhookSecret(secret)).toBeUndefined();
  });

  it("accept keys of 24 to 64 bytes", () => {
    expect(parseWebhookSecret(`whsec_${Buffer.alloc(24, 7).toString("base64")}`)?.length).toBe(24);
    expect(parseWebhookSecret(`whsec_${Buffer.alloc(64, 7).toString("base64")}`)?.length).toBe(64);
  });
});
