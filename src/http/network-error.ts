import { errors as undiciErrors } from "undici";

/**
 * A short reason for a request that got no answer (`ECONNREFUSED`, `timed out`…), for the errors
 * of the gateway's worker client and the agent's HeyGem client, which both talk through undici.
 * Node's own code is the most telling part of a connection failure, so it wins over the message.
 */
export function describeNetworkError(err: unknown): string {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return "timed out";
  }
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause : undefined;
  return networkErrorCode(err) ?? cause?.message ?? err.message;
}

/** Node's code for a request that got no answer (`ECONNREFUSED`…), from the error or its cause. */
export function networkErrorCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  return codeOf(err.cause instanceof Error ? err.cause : undefined) ?? codeOf(err);
}

function codeOf(err: Error | undefined): string | undefined {
  const code = err !== undefined && "code" in err ? err.code : undefined;
  return typeof code === "string" ? code : undefined;
}
