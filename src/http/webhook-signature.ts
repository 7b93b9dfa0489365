import { createHmac } from "node:crypto";

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com, issue 9): each request carries
 * `webhook-id` (the same on every try of one delivery, so a receiver can drop duplicates),
 * `webhook-timestamp` (this try's Unix seconds, so a receiver can refuse replays) and
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the bytes
 * the `whsec_…` secret's base64 part decodes to.
 */

const PREFIX = "whsec_";

/** The spec asks for keys of 24 to 64 bytes. */
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

export const SECRET_FORMAT = `whsec_ followed by base64 of ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} random bytes`;

/** The key bytes of a `whsec_…` secret; undefined when the text is not one. */
export function parseWebhookSecret(text: string): Buffer | undefined {
  if (!text.startsWith(PREFIX)) return undefined;
  const encoded = text.slice(PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 !== 0) return undefined;
  const key = Buffer.from(encoded, "base64");
  return key.length >= MIN_KEY_BYTES && key.length <= MAX_KEY_BYTES ? key : undefined;
}

/** The headers of one try; without a key only the id and time (the delivery is unsigned). */
export function webhookHeaders(
  key: Buffer | undefined,
  id: string,
  timestampSeconds: number,
  body: string,
): Record<string, string> {
  const timestamp = String(timestampSeconds);
  const headers: Record<string, string> = { "webhook-id": id, "webhook-timestamp": timestamp };
  if (key) {
    const mac = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
    headers["webhook-signature"] = `v1,${mac}`;
  }
  return headers;
}
