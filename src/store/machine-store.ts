import type { Kysely } from "kysely";
import { machineTotals } from "./machine-totals.js";
import type { Database } from "./schema.js";

export interface MachineCounts {
  done: number;
  failed: number;
}

export interface SpeedSample {
  machine: string;
  /** Engine seconds per second of audio. */
  secondsPerAudioSecond: number;
}

/** What the store keeps about machines: operator flags and the attempts' history. */
export class MachineStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async drainingMachines(): Promise<Set<string>> {
    const rows = await this.db.selectFrom("machine_flags").select("name").where("draining", "=", 1).execute();
    return new Set(rows.map((r) => r.name));
  }

  async setDraining(name: string, draining: boolean): Promise<void> {
    await this.db
      .insertInto("machine_flags")
      .values({ name, draining: draining ? 1 : 0, updated_at: this.now().toISOString() })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet({ draining: draining ? 1 : 0, updated_at: this.now().toISOString() }),
      )
      .execute();
  }

  /** Attempts that succeeded and failed, per machine, over the history the store keeps. */
  async counts(): Promise<Map<string, MachineCounts>> {
    return machineTotals(this.db);
  }

  /** The latest measured runs of each machine, oldest first, to seed the speed model after a restart. */
  async recentSpeeds(perMachine: number): Promise<SpeedSample[]> {
    const rows = await latestRuns(this.db, perMachine * 50).execute();
    const taken = new Map<string, number>();
    const samples: SpeedSample[] = [];
    for (const row of rows) {
      const n = taken.get(row.machine) ?? 0;
      if (n >= perMachine || row.run_seconds === null) continue;
      taken.set(row.machine, n + 1);
      samples.push({ machine: row.machine, secondsPerAudioSecond: row.run_seconds / row.audio_duration });
    }
    return samples.reverse();
  }
}

/**
 * The latest `limit` successful runs with a measured time, newest first: read backwards along
 * `attempts_ended` (migration 0014), so a start-up reads these rows, not every attempt ever kept.
 */
export function latestRuns(db: Kysely<Database>, limit: number) {
  return db
    .selectFrom("attempts as a")
    .innerJoin("tasks as t", "t.id", "a.task_id")
    .select(["a.machine", "a.run_seconds", "t.audio_duration", "a.ended_at"])
    .where("a.status", "=", "succeeded")
    .where("a.run_seconds", "is not", null)
    .where("t.audio_duration", ">", 0)
    .orderBy("a.ended_at", "desc")
    .limit(limit);
}
