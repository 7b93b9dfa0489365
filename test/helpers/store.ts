import { join } from "node:path";
import type { Kysely } from "kysely";
import { CallbackStore } from "../../src/store/callback-store.js";
import { openSqlite } from "../../src/store/database.js";
import type { Database } from "../../src/store/schema.js";
import { type NewTaskInput, TaskStore } from "../../src/store/task-store.js";

export interface TestStore {
  readonly file: string;
  readonly db: Kysely<Database>;
  readonly tasks: TaskStore;
  readonly callbacks: CallbackStore;
  close(): Promise<void>;
}

/**
 * The gateway's store on a real SQLite file under `dir` (the same file again after a close, as a
 * restarted gateway would find it). Its clock is `now`, so timestamps are whatever a test says.
 */
export async function openTestStore(dir: string, now: () => Date = () => new Date()): Promise<TestStore> {
  const file = join(dir, "multi-heygem.db");
  const db = await openSqlite(file);
  return {
    file,
    db,
    tasks: new TaskStore(db, now),
    callbacks: new CallbackStore(db, now),
    close: () => db.destroy(),
  };
}

let made = 0;

/** What POST /tasks would hand the store, with a fresh id unless told. */
export function newTask(over: Partial<NewTaskInput> = {}): NewTaskInput {
  made++;
  return {
    id: `task-${made}-${process.pid}`,
    description: null,
    callbackUrl: null,
    priority: 0,
    options: {},
    audio: { sha256: "a".repeat(64), name: "speech.wav", bytes: 1000, duration: 2.5 },
    video: { sha256: "b".repeat(64), name: "person.mp4", bytes: 5000 },
    ...over,
  };
}
