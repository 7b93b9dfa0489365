import type { PlacementName } from "../../config/placement-names.js";
import { earliestFinish } from "./earliest-finish.js";
import { leastLoaded } from "./least-loaded.js";
import type { PlacementPolicy } from "./policy.js";
import { roundRobin } from "./round-robin.js";

export { PLACEMENT_NAMES, type PlacementName } from "../../config/placement-names.js";
export type { PlacementPolicy } from "./policy.js";

export function createPlacement(name: PlacementName): PlacementPolicy {
  switch (name) {
    case "earliest-finish":
      return earliestFinish;
    case "least-loaded":
      return leastLoaded;
    case "round-robin":
      return roundRobin();
  }
}
