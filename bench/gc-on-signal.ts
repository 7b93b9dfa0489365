import { writeFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Loaded into a gateway child with `NODE_OPTIONS=--import=…` by the growth benchmark, and nothing
 * else: on SIGUSR2 it runs a full garbage collection and writes `process.memoryUsage()` as JSON to
 * `$MH_BENCH_MEMORY_FILE`, so two gateways' memory is compared with their garbage gone (an RSS
 * read at a random moment holds whatever the last requests left behind). The gateway itself sets
 * no SIGUSR2 handler.
 */
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const out = process.env.MH_BENCH_MEMORY_FILE;

process.on("SIGUSR2", () => {
  if (!out) return;
  gc();
  // A second pass frees what the first one's finalisers let go of.
  gc();
  writeFileSync(out, JSON.stringify(process.memoryUsage()));
});
