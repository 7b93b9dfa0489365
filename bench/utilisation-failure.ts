import { setTimeout as sleep } from "node:timers/promises";
import { restartSimWorker, type SimWorker } from "./fleet.js";
import { type BenchContext, type Benchmark, figure, type Measured } from "./report.js";
import { round, sum } from "./stats.js";
import { FLEET, runPolicy, THROUGHPUT, utilisationWorkload } from "./utilisation.js";

/**
 * Issue 14, "Fleet utilisation with a failure": the earliest-finish run of bench/utilisation.ts,
 * with its biggest machine killed at 30 % of the expected makespan and back at 60 %. Makespan ÷
 * the bound for the capacity that was actually there.
 */

const POLICY = "earliest-finish";
/** Half the fleet's throughput (capacity 2 at speed factor 1): the loss that hurts most. */
const VICTIM = "gpu-1";
const KILL_AT = 0.3;
const BACK_AT = 0.6;

/**
 * The earliest time by which a fleet whose rate is `full` (capacity-seconds per second), except
 * `reduced` from `from` to `to`, can have done `work` capacity-seconds: ∫₀ᵀ C(t) dt = work.
 */
export function outageBound(work: number, full: number, reduced: number, from: number, to: number): number {
  if (work <= full * from) return work / full;
  const during = reduced * (to - from);
  if (work <= full * from + during) return from + (work - full * from) / reduced;
  return to + (work - full * from - during) / full;
}

export const utilisationFailure: Benchmark = {
  name: "utilisation-failure",
  title: "Fleet utilisation with a machine lost (issue 14)",
  async run(ctx: BenchContext): Promise<Measured> {
    const count = ctx.quick ? 40 : 200;
    const targetSec = ctx.quick ? 9 : 50;
    const workload = await utilisationWorkload(ctx, count, targetSec);
    const { timeScale } = workload;
    const victim = FLEET.find((m) => m.name === VICTIM);
    if (!victim) throw new Error(`${VICTIM} is not in the fleet`);
    let killedSec = Number.NaN;
    let backSec = Number.NaN;

    const run = await runPolicy(ctx, POLICY, workload, async ({ dir, workers, t0 }) => {
      const i = workers.findIndex((w) => w.spec.name === VICTIM);
      const worker = workers[i] as SimWorker;
      const since = () => (Date.now() - t0) / 1000;
      await sleep(Math.max(0, t0 + KILL_AT * targetSec * 1000 - Date.now()));
      killedSec = since();
      ctx.log(`kill -9 ${VICTIM} at ${round(killedSec, 2)} s`);
      await worker.child.kill();
      await sleep(Math.max(0, t0 + BACK_AT * targetSec * 1000 - Date.now()));
      workers[i] = await restartSimWorker(ctx.scope, dir, worker);
      backSec = since();
      ctx.log(`${VICTIM} listening again at ${round(backSec, 2)} s`);
    });

    // Capacity-seconds of work, the fleet's rate with and without the victim, over the measured
    // outage: from the SIGKILL to the restarted worker's "listening" line.
    const work = run.audioTotalSec * timeScale;
    const reduced = THROUGHPUT - victim.capacity / victim.speedFactor;
    const longest = run.audioMaxSec * Math.min(...FLEET.map((m) => m.speedFactor)) * timeScale;
    const boundSec = Math.max(outageBound(work, THROUGHPUT, reduced, killedSec, backSec), longest);
    const noFailureBoundSec = Math.max(work / THROUGHPUT, longest);
    const ratio = run.makespanSec / boundSec;
    // The same bound with each machine's speed as its engine really ran (journal: Σ(finished −
    // started) ÷ Σ audio), as utilisation.ts does: what placement and failover cost apart from
    // the engines' own overhead on a busy box.
    const asRun = FLEET.map((m) => {
      const facts = run.perMachine[m.name];
      const speed =
        facts?.busySec != null && facts.audioSec > 0 ? facts.busySec / facts.audioSec : Number.NaN;
      return { name: m.name, rate: m.capacity / speed };
    });
    const fullAsRun = sum(asRun.map((m) => m.rate));
    const reducedAsRun = fullAsRun - (asRun.find((m) => m.name === VICTIM)?.rate ?? Number.NaN);
    const engineBoundSec = outageBound(run.audioTotalSec, fullAsRun, reducedAsRun, killedSec, backSec);
    ctx.log(`makespan ${round(run.makespanSec, 2)} s, bound with the outage ${round(boundSec, 2)} s`);
    const names = FLEET.map((m) => m.name);

    return {
      figures: [
        figure(
          "utilisation_failure.ratio",
          `Fleet utilisation with ${VICTIM} killed at ${KILL_AT * 100} % and back at ${BACK_AT * 100} %: makespan ÷ bound for the capacity available`,
          round(ratio, 3),
          "×",
          { op: "<=", value: 1.1 },
        ),
        figure(
          "utilisation_failure.failed",
          "Fleet utilisation with a machine lost: tasks failed",
          run.failed,
          "tasks",
          { op: "<=", value: 0 },
        ),
      ],
      tables: [
        {
          title: `The run (${count} tasks, ${POLICY}, time scale ${timeScale})`,
          columns: [
            "makespan s",
            "bound with the outage s",
            "ratio",
            "bound without it s",
            "bound with engines as run s",
            "ratio to it",
            `${VICTIM} killed at s`,
            `${VICTIM} back at s`,
            "tasks retried",
            "failed",
            "tail s",
            ...names.map((n) => `tasks ${n}`),
          ],
          rows: [
            [
              round(run.makespanSec, 2),
              round(boundSec, 2),
              round(ratio, 3),
              round(noFailureBoundSec, 2),
              Number.isFinite(engineBoundSec) ? round(engineBoundSec, 2) : "—",
              Number.isFinite(engineBoundSec) ? round(run.makespanSec / engineBoundSec, 3) : "—",
              round(killedSec, 2),
              round(backSec, 2),
              run.retried,
              run.failed,
              round(run.tailSec, 2),
              ...names.map((n) => run.perMachine[n]?.tasks ?? 0),
            ],
          ],
        },
      ],
      method: [
        `The earliest-finish run of "Fleet utilisation" (same fleet, seed, inputs and gateway flags; ${count} tasks ` +
          `POSTed up front, time scale for an ideal ${targetSec} s), with ${VICTIM} (capacity ${victim.capacity}, ` +
          `speed factor ${victim.speedFactor}: ${round((victim.capacity / victim.speedFactor / THROUGHPUT) * 100)} % ` +
          `of the fleet's throughput) given SIGKILL at ${KILL_AT * 100} % of that ideal and started again (same ` +
          `port and data dir) at ${BACK_AT * 100} %. Every gateway timing not in those flags is its default (5 s ` +
          "grace before a silent machine's tasks move).",
        "Bound for the capacity available = max(T, longest audio × fastest factor × time scale), where T solves " +
          "∫₀ᵀ C(t) dt = Σ audio × time scale, C(t) = Σ(capacity ÷ speed factor) of the machines up at t: " +
          `${THROUGHPUT} outside the outage, ${reduced} from the SIGKILL to the restarted worker's "listening" ` +
          "line (both measured on the client's clock). So T = k + (W − F·k − R·(b − k)) ÷ F when the work outlasts " +
          "the outage (k, b: kill and back; F, R: full and reduced rate; W: work).",
        "'Bound with engines as run': the same with each machine's rate as its engine ran (capacity ÷ " +
          "(Σ(finished − started) ÷ Σ audio) from its journal; jobs cut by the kill have no finish and are " +
          "not counted), separating placement and failover from the engines' overhead on a busy machine.",
        "What the bound does not grant the gateway: the work lost with the killed machine's running jobs (they " +
          "start again from nothing elsewhere), the grace period before they move, and noticing the machine back.",
      ],
      raw: { count, timeScale, killedSec, backSec, boundSec, noFailureBoundSec, ratio, engineBoundSec, run },
    };
  },
};
