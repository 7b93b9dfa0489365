/**
 * The placement policies `--placement` may name. They are the gateway's (gateway/placement/), but
 * the flag is checked at start-up with every other setting, and config/ imports nothing of the
 * gateway; `createPlacement` switches over these names, so a name without a policy does not compile.
 */
export const PLACEMENT_NAMES = ["earliest-finish", "least-loaded", "round-robin"] as const;
export type PlacementName = (typeof PLACEMENT_NAMES)[number];
