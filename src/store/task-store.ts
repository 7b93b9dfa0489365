import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { type CompiledQuery, type Kysely, sql, type Transaction } from "kysely";
import { BoundedMap } from "../bounded-map.js";
import { type FailureKind, InputError } from "../errors.js";
import { newDelivery } from "./callback-store.js";
import { inEventOrder, isPostgres, nextSeq, notifyGateways } from "./dialect.js";
import { addToMachineTotals } from "./machine-totals.js";
import {
  type AttemptRow,
  type Database,
  type EventRow,
  LIVE_ATTEMPT_STATUSES,
  type TaskRow,
  type TaskStatus,
} from "./schema.js";
import {
  encodeTaskSpeech,
  estimateSpeechSeconds,
  TASK_NEEDS,
  type TaskNeed,
  type TaskSpeech,
} from "./task-speech.js";
import { addToTaskTotals, taskTotal } from "./task-totals.js";
import { type AllowedTransition, allowedTransition, type TaskMove } from "./task-transitions.js";

export interface NewTaskInput {
  id: string;
  description: string | null;
  callbackUrl: string | null;
  priority: number;
  options: Record<string, unknown>;
  /** The uploaded audio; null for a text task (exactly one of `audio` and `speech`). */
  audio: StoredAudio | null;
  video: { sha256: string; name: string; bytes: number };
  /** The API key's name; absent or null without keys. */
  owner?: string | null;
  /** What the `queued` event says the task waits for (default: a free machine). */
  waiting?: string;
  /**
   * The avatar whose video `video` is (issue 12). Checked in the task's own transaction: a
   * DELETE /avatars/{id} either ran before (the task is refused) or sees this live task (409).
   */
  avatarId?: string | null;
  /**
   * What a text task says (issue 12); its audio columns hold a placeholder with an estimated
   * duration until the completing attempt stores the spoken audio (schema.ts, `speech`).
   */
  speech?: TaskSpeech | null;
  /** The voice a text task speaks in, checked in the task's transaction like an avatar. */
  voiceId?: string | null;
}

/** An audio file as a task's audio columns keep it: uploaded, or spoken by a machine. */
export interface StoredAudio {
  sha256: string;
  name: string;
  bytes: number;
  /** Seconds. */
  duration: number;
}

/** Emitted after the transaction that made it has committed. */
export interface TaskChange {
  task: TaskRow;
  event: EventRow;
  /**
   * Written by another gateway on the same database (issue 13), and heard of through `catchUp()`.
   * What counts this process's own work (metrics) skips it; what follows tasks (sync waits, SSE,
   * the scheduler) takes it like any change.
   */
  foreign?: true;
}

/** What the gateways on one database tell each other (dialect.ts, `notifyGateways`). */
export const GATEWAY_NOTICE = {
  /** Events committed: read them with `catchUp()`. */
  events: "e",
  /** A task's progress moved without an event row. */
  progress: "p",
} as const;

/** Events read per query while catching up. */
const CATCH_UP_BATCH = 500;

type EventFields = Omit<EventRow, "id" | "task_id" | "at">;

const RECENT_TASKS = 4096;

/**
 * Every state change of a task, its attempts, its event row and its callback deliveries are
 * written in one transaction: the store is the truth (design.md), and what the process holds in
 * memory can be rebuilt from it after a crash. `changes` tells the living process what committed.
 */
export class TaskStore {
  /**
   * `change`: a committed change with its event row. `progress`: the current attempt's progress
   * moved without a row of its own (below a step of the log); for live views only (SSE), it is
   * not part of the task's history.
   */
  readonly changes = new EventEmitter<{ change: [TaskChange]; progress: [TaskRow] }>();

  /** This process's name in what it tells the other gateways, so it can skip its own notices. */
  readonly instance = randomUUID().slice(0, 8);

  /**
   * Other gateways may write this store (PostgreSQL, issue 13): nothing read is cached, every
   * event written is announced, and `catchUp()` re-emits theirs on `changes`.
   */
  private readonly shared: boolean;

  /** The newest event id `catchUp()` has seen; undefined until `followOthers()`. */
  private cursor: number | undefined;
  /** Ids of events this process wrote (and emitted itself) that `catchUp()` has not yet passed. */
  private readonly mine = new Set<number>();
  private catching: Promise<void> | undefined;
  private catchAgain = false;

  constructor(
    readonly db: Kysely<Database>,
    private readonly now: () => Date = () => new Date(),
    /**
     * Runs before every write and throws when the write could not be kept: SQLite goes on writing
     * to a database file deleted under it, so without this check a vanished data dir would take
     * every change and lose it at the next start (issue 9). The gateway passes DataDirHealth's.
     */
    private readonly beforeWrite: () => Promise<void> = async () => {},
  ) {
    this.changes.setMaxListeners(0);
    this.shared = isPostgres(db);
    this.taskById = db.selectFrom("tasks").selectAll().where("id", "=", "").compile();
  }

  /** The hottest query (every client polls it), compiled once: building it costs more than running it. */
  private readonly taskById: CompiledQuery<TaskRow>;

  /**
   * Rows read lately, for clients that poll a task every few seconds. Every write of a task goes
   * through this class and drops its row here once committed, so a hit is never stale, as long as
   * only this process writes the store: SQLite (the data dir's lock). On PostgreSQL other gateways
   * write it too, and a row they changed would be served stale until their notice arrived, so
   * there the cache is off and every read is a primary-key lookup (issue 13).
   */
  private readonly recent = new BoundedMap<string, TaskRow>(RECENT_TASKS);

  private writes = 0;

  /**
   * Tasks waiting for a machine, kept up to date from the committed changes so that admission
   * (`--max-pending`) costs no query per request. Read once from the store by `countPending()`.
   */
  private pending = 0;

  private forget(taskId: string): void {
    this.writes++;
    this.recent.delete(taskId);
  }

  /** Rows changed or deleted elsewhere (retention-store.ts): the next read goes to the store. */
  invalidate(taskIds: Iterable<string>): void {
    for (const id of taskIds) this.forget(id);
  }

  private remember(task: TaskRow): void {
    if (this.shared) return;
    this.recent.set(task.id, task);
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  async createTask(input: NewTaskInput): Promise<TaskRow> {
    const speech = input.speech ?? null;
    if ((input.audio === null) === (speech === null))
      throw new TypeError("a task has exactly one of audio and speech");
    const audio = input.audio ?? textPlaceholder(speech?.text ?? "");
    await this.beforeWrite();
    const at = this.stamp();
    const { task, events } = await this.db.transaction().execute(async (trx) => {
      const avatarId = input.avatarId ?? null;
      const voiceId = speech === null ? null : (input.voiceId ?? null);
      if (avatarId !== null) {
        // Shared: a DELETE /avatars/{id} under way (it locks the row to update) ends first.
        const avatar = await trx
          .selectFrom("avatars")
          .select("id")
          .where("id", "=", avatarId)
          .forShare()
          .executeTakeFirst();
        if (!avatar) throw new InputError("UNKNOWN_AVATAR", `no avatar ${avatarId}`, "avatar_id");
      }
      // As for avatars: a DELETE /voices/{id} either ran before (refused here) or sees this task.
      if (voiceId !== null) {
        const voice = await trx
          .selectFrom("voices")
          .select("id")
          .where("id", "=", voiceId)
          // Shared, as the avatar above: a DELETE /voices/{id} under way ends first.
          .forShare()
          .executeTakeFirst();
        if (!voice) throw new InputError("UNKNOWN_VOICE", `no voice ${voiceId}`, "voice_id");
      }
      await trx
        .insertInto("tasks")
        .values({
          id: input.id,
          seq: nextSeq(trx, "tasks"),
          status: "pending",
          description: input.description,
          callback_url: input.callbackUrl,
          priority: input.priority,
          options: JSON.stringify(input.options),
          audio_sha256: audio.sha256,
          audio_name: audio.name,
          audio_bytes: audio.bytes,
          audio_duration: audio.duration,
          video_sha256: input.video.sha256,
          video_name: input.video.name,
          video_bytes: input.video.bytes,
          created_at: at,
          updated_at: at,
          progress: 0,
          attempts: 0,
          started_at: null,
          completed_at: null,
          machine: null,
          error_message: null,
          error_kind: null,
          current_attempt: null,
          result_sha256: null,
          result_bytes: null,
          owner: input.owner ?? null,
          files_deleted_at: null,
          avatar_id: avatarId,
          speech: speech === null ? null : encodeTaskSpeech(speech),
          voice_id: voiceId,
        })
        .execute();
      const video =
        avatarId === null ? `video ${input.video.name}` : `avatar ${avatarId} (${input.video.name})`;
      const said =
        speech === null
          ? `audio ${audio.name} (${audio.duration.toFixed(2)} s)`
          : `text task: ${[...speech.text].length} characters in ${speech.lang}` +
            `${voiceId === null ? "" : ` in voice ${voiceId}`}, about ${audio.duration.toFixed(2)} s once spoken`;
      const created = await this.addEvent(trx, input.id, at, {
        type: "created",
        from_status: null,
        to_status: null,
        message: `${said}, ${video}`,
      });
      const task = await trx
        .selectFrom("tasks")
        .selectAll()
        .where("id", "=", input.id)
        .executeTakeFirstOrThrow();
      const queued = await this.recordStatus(trx, task, at, allowedTransition(null, "pending"), {
        message: input.waiting ?? "waiting for a free machine",
      });
      await addToTaskTotals(trx, [{ owner: task.owner, status: "pending", n: 1 }]);
      return { task, events: [created, queued] };
    });
    for (const event of events) this.committed({ task, event });
    return task;
  }

  /** Tasks now pending: counted from the store once, at start, then kept by every change. */
  async countPending(): Promise<number> {
    const row = await this.db
      .selectFrom("tasks")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("status", "=", "pending")
      .executeTakeFirstOrThrow();
    this.pending = Number(row.n);
    return this.pending;
  }

  /**
   * From now on, `catchUp()` hears of the changes other gateways commit (PostgreSQL, issue 13):
   * the pending count and the event cursor are read in one snapshot, so that every event after
   * it is counted exactly once, by whoever emits it.
   */
  async followOthers(): Promise<void> {
    if (!this.shared) return;
    const { n, last } = await this.db
      .transaction()
      .setIsolationLevel("repeatable read")
      .execute(async (trx) => {
        const count = await trx
          .selectFrom("tasks")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("status", "=", "pending")
          .executeTakeFirstOrThrow();
        const max = await trx
          .selectFrom("events")
          .select((eb) => eb.fn.max("id").as("id"))
          .executeTakeFirst();
        return { n: Number(count.n), last: Number(max?.id ?? 0) };
      });
    this.pending = n;
    this.cursor = last;
  }

  /**
   * Emits on `changes` (marked `foreign`) the events other gateways committed since the last
   * call, in id order (dialect.ts, `inEventOrder`: ids become visible in order, so none is
   * skipped). Calls that overlap are folded into one more round. `waiting` notes are skipped, as
   * `noteWaiting` emits nothing for its own.
   */
  catchUp(): Promise<void> {
    if (this.cursor === undefined) return Promise.resolve();
    if (this.catching) {
      this.catchAgain = true;
      return this.catching;
    }
    this.catching = (async () => {
      try {
        do {
          this.catchAgain = false;
          await this.readForeignEvents();
        } while (this.catchAgain);
      } finally {
        this.catching = undefined;
      }
    })();
    return this.catching;
  }

  private async readForeignEvents(): Promise<void> {
    for (;;) {
      const from = this.cursor ?? 0;
      const events = await this.db
        .selectFrom("events")
        .selectAll()
        .where("id", ">", from)
        .orderBy("id")
        .limit(CATCH_UP_BATCH)
        .execute();
      for (const event of events) {
        this.cursor = event.id;
        if (this.mine.delete(event.id) || event.type === "waiting") continue;
        if (event.to_status === "pending") this.pending++;
        if (event.from_status === "pending") this.pending--;
        const task = await this.getTask(event.task_id);
        if (task) this.changes.emit("change", { task, event, foreign: true });
      }
      // Ids drawn by transactions that rolled back never show up: drop them once passed.
      for (const id of this.mine) if (id <= (this.cursor ?? 0)) this.mine.delete(id);
      if (events.length < CATCH_UP_BATCH) return;
    }
  }

  /** Another gateway said a task's progress moved (no event row): live views get the row. */
  async progressElsewhere(taskId: string): Promise<void> {
    const task = await this.getTask(taskId);
    if (task?.status === "processing") this.changes.emit("progress", task);
  }

  get pendingCount(): number {
    return this.pending;
  }

  /**
   * Moves a pending task to `processing` with a new attempt on `machine`. Returns undefined when
   * the task is no longer pending (another path got it first), or, with `term` (the dispatching
   * gateway's epoch, issue 13), when a newer term has begun: a deposed dispatcher claims nothing.
   */
  async startAttempt(
    taskId: string,
    attemptId: string,
    machine: string,
    term?: number,
  ): Promise<TaskRow | undefined> {
    return this.transition(taskId, {
      from: "pending",
      to: "processing",
      onlyIfAsync: term === undefined ? undefined : (trx) => termIsCurrent(trx, term),
      write: async (trx, _task, at) => {
        await trx
          .insertInto("attempts")
          .values({
            id: attemptId,
            task_id: taskId,
            machine,
            status: "dispatching",
            created_at: at,
            ended_at: null,
            error_kind: null,
            error_message: null,
            run_seconds: null,
          })
          .execute();
      },
      set: (task, at) => ({
        started_at: task.started_at ?? at,
        machine,
        current_attempt: attemptId,
        attempts: task.attempts + 1,
        progress: 0,
      }),
      event: (task) => ({
        machine,
        attempt_id: attemptId,
        message: `attempt ${task.attempts + 1} dispatched to machine ${machine}`,
      }),
    });
  }

  /** The worker accepted the job. */
  async markAttemptRunning(attemptId: string): Promise<void> {
    await this.db
      .updateTable("attempts")
      .set({ status: "running" })
      .where("id", "=", attemptId)
      .where("status", "=", "dispatching")
      .execute();
  }

  /**
   * Progress of the current attempt. `step` adds a row to the task's log; without it only the
   * task's `progress` moves (an engine that reports every percent should not flood the log).
   */
  async recordProgress(
    taskId: string,
    attemptId: string,
    progress: number,
    message: string | undefined,
    step: boolean,
  ): Promise<void> {
    await this.beforeWrite();
    if (!step) {
      const updated = await this.db
        .updateTable("tasks")
        .set({ progress, updated_at: this.stamp() })
        .where("id", "=", taskId)
        .where("current_attempt", "=", attemptId)
        .where("status", "=", "processing")
        .returningAll()
        .executeTakeFirst();
      this.forget(taskId);
      if (updated) {
        this.changes.emit("progress", updated);
        await notifyGateways(this.db, `${GATEWAY_NOTICE.progress}:${this.instance}:${taskId}`);
      }
      return;
    }
    await this.change(taskId, async (trx, task, at) => {
      if (task.current_attempt !== attemptId || task.status !== "processing") return undefined;
      // The same progress is a step only with a new message: a text task's "lipsync" starts where
      // its "speech" ended (issue 12).
      if (progress === task.progress && (message ?? null) === (await lastStep(trx, taskId, attemptId)))
        return undefined;
      const updated = await this.updateTask(trx, taskId, { progress, updated_at: at });
      const event = await this.addEvent(trx, taskId, at, {
        type: "progress",
        from_status: null,
        to_status: null,
        machine: task.machine,
        attempt_id: attemptId,
        progress,
        message: message ?? null,
      });
      return { task: updated, event };
    });
  }

  /**
   * The current attempt produced a result that is now safe in the gateway's blob store. A text
   * task's `spoken` audio (safe there too) becomes its audio in the same transaction, so a
   * completed text task always has both, and retention sees them as any task's.
   */
  async completeAttempt(
    taskId: string,
    attemptId: string,
    result: { sha256: string; bytes: number },
    runSeconds?: number,
    spoken?: StoredAudio,
  ): Promise<TaskRow | undefined> {
    return this.transition(taskId, {
      from: "processing",
      to: "completed",
      onlyIfCurrent: attemptId,
      write: async (trx, _task, at) => {
        await this.endAttempt(trx, attemptId, "succeeded", at);
        if (runSeconds !== undefined) {
          await trx
            .updateTable("attempts")
            .set({ run_seconds: runSeconds })
            .where("id", "=", attemptId)
            .execute();
        }
      },
      set: (_task, at) => ({
        completed_at: at,
        progress: 100,
        result_sha256: result.sha256,
        result_bytes: result.bytes,
        error_message: null,
        error_kind: null,
        ...(spoken
          ? {
              audio_sha256: spoken.sha256,
              audio_name: spoken.name,
              audio_bytes: spoken.bytes,
              audio_duration: spoken.duration,
            }
          : {}),
      }),
      event: (task) => ({
        machine: task.machine,
        attempt_id: attemptId,
        progress: 100,
        message:
          `result ${result.bytes} bytes` +
          (spoken ? `; spoken audio ${spoken.duration.toFixed(2)} s, ${spoken.bytes} bytes` : ""),
      }),
    });
  }

  /**
   * Ends the current attempt as failed. With `retry`, the task goes back to `pending` for another
   * machine; otherwise the task fails with the message.
   */
  async failAttempt(
    taskId: string,
    attemptId: string,
    failure: { kind: FailureKind; message: string; retry: boolean },
  ): Promise<TaskRow | undefined> {
    const write = (trx: Transaction<Database>, _task: TaskRow, at: string) =>
      this.endAttempt(trx, attemptId, "failed", at, failure.kind, failure.message);
    if (failure.retry) {
      return this.transition(taskId, {
        from: "processing",
        to: "pending",
        onlyIfCurrent: attemptId,
        write,
        set: () => ({ current_attempt: null, machine: null, progress: 0 }),
        event: (task) => ({
          machine: task.machine,
          attempt_id: attemptId,
          message: `attempt on ${task.machine} failed (${failure.kind}): ${failure.message}; queued again`,
        }),
      });
    }
    return this.transition(taskId, {
      from: "processing",
      to: "failed",
      onlyIfCurrent: attemptId,
      write,
      set: (_task, at) => ({ completed_at: at, error_message: failure.message, error_kind: failure.kind }),
      event: (task) => ({ machine: task.machine, attempt_id: attemptId, message: failure.message }),
    });
  }

  /**
   * The machine refused the current attempt's job before running it (its agent is stopping): the
   * attempt is `abandoned` and not counted, and the task goes back to `pending` for another machine.
   */
  async withdrawAttempt(taskId: string, attemptId: string, message: string): Promise<TaskRow | undefined> {
    return this.transition(taskId, {
      from: "processing",
      to: "pending",
      onlyIfCurrent: attemptId,
      write: (trx, _task, at) => this.endAttempt(trx, attemptId, "abandoned", at, "machine", message),
      set: (task) => ({
        current_attempt: null,
        machine: null,
        progress: 0,
        attempts: Math.max(0, task.attempts - 1),
      }),
      event: (task) => ({
        machine: task.machine,
        attempt_id: attemptId,
        message: `${message}; queued again`,
      }),
    });
  }

  /** Fails a task that has no live attempt (still pending), e.g. when it waited past its deadline. */
  async failPendingTask(taskId: string, message: string): Promise<TaskRow | undefined> {
    return this.transition(taskId, {
      from: "pending",
      to: "failed",
      set: (_task, at) => ({ completed_at: at, error_message: message, error_kind: "machine" }),
      event: () => ({ message }),
    });
  }

  /**
   * Cancels a task that has not finished (POST /tasks/{id}/cancel). A pending task never runs; a
   * processing one has its current attempt ended as `cancelled` in the same transaction, so a late
   * result of that attempt can never complete the task (fencing: `completeAttempt` wants the task
   * `processing`). Stopping the job on its machine is the dispatcher's part. Undefined, changing
   * nothing, when the task is no longer `from`.
   */
  async cancelTask(
    taskId: string,
    from: "pending" | "processing",
    message: string,
  ): Promise<TaskRow | undefined> {
    return from === "pending"
      ? this.transition(taskId, this.cancelMove("pending", message))
      : this.transition(taskId, this.cancelMove("processing", message));
  }

  /**
   * Cancels up to `limit` pending tasks, highest priority first, in one transaction, each with its
   * event and callback rows as if cancelled one by one. Returns how many it cancelled: the caller
   * repeats until that is less than `limit`, so that emptying a queue of 100k tasks is many short
   * transactions between which the API goes on answering.
   */
  async cancelPendingBatch(limit: number, message: string): Promise<number> {
    await this.beforeWrite();
    const at = this.stamp();
    const move = allowedTransition("pending", "cancelled");
    const step = this.cancelMove("pending", message);
    const changes = await this.db.transaction().execute(async (trx) => {
      // Locked as read: a task the dispatcher starts meanwhile drops out of the answer, and on
      // PostgreSQL the next one in the queue takes its place (the lock is taken below the limit).
      const tasks = await pendingInQueueOrder(trx, limit).forUpdate().execute();
      const done: TaskChange[] = [];
      for (const task of tasks) done.push(await this.applyMove(trx, task, at, move, step));
      return done;
    });
    for (const change of changes) {
      this.forget(change.task.id);
      this.committed(change);
    }
    return changes.length;
  }

  /**
   * Queues a failed or cancelled task again under the same id (POST /tasks/{id}/retry), with fresh
   * attempts: the counter starts again from 0, so it gets the whole `--max-attempts`. The earlier
   * attempts stay in its history; none of them is current, so none can complete it (fencing).
   */
  async retryTask(taskId: string, from: "failed" | "cancelled"): Promise<TaskRow | undefined> {
    const step = {
      set: () => ({
        attempts: 0,
        progress: 0,
        current_attempt: null,
        machine: null,
        started_at: null,
        completed_at: null,
        error_message: null,
        error_kind: null,
        result_sha256: null,
        result_bytes: null,
      }),
      event: (task: TaskRow) => ({ message: `retried after it was ${task.status}; queued again` }),
      // Decided in the same transaction as retention's: a task whose files went cannot run again.
      onlyIf: (task: TaskRow) => task.files_deleted_at === null,
    };
    return from === "failed"
      ? this.transition(taskId, { from: "failed", to: "pending", ...step })
      : this.transition(taskId, { from: "cancelled", to: "pending", ...step });
  }

  /** Unfinished tasks created before `before` (ISO time), oldest first. */
  async unfinishedCreatedBefore(before: string, limit: number): Promise<TaskRow[]> {
    return this.db
      .selectFrom("tasks")
      .selectAll()
      .where("status", "in", ["pending", "processing"])
      .where("created_at", "<", before)
      .orderBy("seq")
      .limit(limit)
      .execute();
  }

  async getTask(id: string): Promise<TaskRow | undefined> {
    const cached = this.recent.get(id);
    if (cached) return cached;
    const writesBefore = this.writes;
    const { rows } = await this.db.executeQuery<TaskRow>({ ...this.taskById, parameters: [id] });
    const task = rows[0];
    // A write that committed while this read was under way may have made the row stale.
    if (task && this.writes === writesBefore) this.remember(task);
    return task;
  }

  /**
   * A page of tasks, newest first. `before` (the `seq` of the last task of the previous page)
   * reads the next page from the index wherever it is, where `offset` would step over every task
   * before it; both are accepted, `before` for deep pages.
   */
  async listTasks(filter: {
    status?: TaskStatus;
    owner?: string;
    limit: number;
    offset: number;
    before?: number;
  }): Promise<{ tasks: TaskRow[]; total: number }> {
    let query = this.db.selectFrom("tasks");
    if (filter.status) query = query.where("status", "=", filter.status);
    if (filter.owner !== undefined) query = query.where("owner", "=", filter.owner);
    let page = query.selectAll();
    if (filter.before !== undefined) page = page.where("seq", "<", filter.before);
    const [tasks, total] = await Promise.all([
      page.orderBy("seq", "desc").limit(filter.limit).offset(filter.offset).execute(),
      taskTotal(this.db, filter),
    ]);
    return { tasks, total };
  }

  async listEvents(taskId: string): Promise<EventRow[]> {
    return this.db.selectFrom("events").selectAll().where("task_id", "=", taskId).orderBy("id").execute();
  }

  /**
   * Events after `afterId` in the order they were written, with their task as it is now: what a
   * live view missed while it was away (SSE's `Last-Event-ID`). Events of deleted tasks are gone.
   */
  async eventsAfter(
    afterId: number,
    filter: { taskId?: string; owner?: string; limit: number },
  ): Promise<{ event: EventRow; task: TaskRow }[]> {
    let query = this.db.selectFrom("events").selectAll().where("id", ">", afterId);
    if (filter.taskId !== undefined) query = query.where("task_id", "=", filter.taskId);
    if (filter.owner !== undefined) {
      const owner = filter.owner;
      query = query.where("task_id", "in", (eb) =>
        eb.selectFrom("tasks").select("tasks.id").where("tasks.owner", "=", owner),
      );
    }
    const events = await query.orderBy("id").limit(filter.limit).execute();
    const tasks = new Map<string, TaskRow>();
    const out: { event: EventRow; task: TaskRow }[] = [];
    for (const event of events) {
      let task = tasks.get(event.task_id);
      if (!task) {
        task = await this.getTask(event.task_id);
        if (!task) continue;
        tasks.set(task.id, task);
      }
      out.push({ event, task });
    }
    return out;
  }

  /** The id of the newest event (of one task, or of all); 0 when there is none. */
  async lastEventId(taskId?: string): Promise<number> {
    let query = this.db.selectFrom("events").select((eb) => eb.fn.max("id").as("id"));
    if (taskId !== undefined) query = query.where("task_id", "=", taskId);
    const row = await query.executeTakeFirst();
    return Number(row?.id ?? 0);
  }

  /**
   * Pending tasks in the order they should go out: priority first, then arrival. `upTo`: only those
   * a machine that can do that much can take (a fleet that cannot speak is not shown text tasks,
   * which would otherwise fill the look-ahead and hide the audio tasks behind them).
   */
  async pendingTasks(limit: number, upTo: TaskNeed = "voice_clone"): Promise<TaskRow[]> {
    return pendingInQueueOrder(this.db, limit, upTo).execute();
  }

  /**
   * Ids of the tasks now pending, in no particular order (one read of the status index); with
   * `need`, only those that need exactly that of a machine.
   */
  async pendingTaskIds(need?: TaskNeed): Promise<string[]> {
    let query = this.db.selectFrom("tasks").select("id").where("status", "=", "pending");
    if (need === "lipsync") query = query.where("speech", "is", null);
    if (need === "tts") query = query.where("speech", "is not", null).where("voice_id", "is", null);
    if (need === "voice_clone") query = query.where("voice_id", "is not", null);
    const rows = await query.execute();
    return rows.map((row) => row.id);
  }

  /**
   * Adds a `waiting` event saying `message` to those of `taskIds` still pending, in one
   * transaction; returns how many got it. A note, not a change: no status moves, so no callback
   * and nothing on `changes`. Callers pass small batches, so the store is never held for long.
   */
  async noteWaiting(taskIds: readonly string[], message: string): Promise<number> {
    if (taskIds.length === 0) return 0;
    await this.beforeWrite();
    const at = this.stamp();
    const result = await this.db.transaction().execute(async (trx) => {
      await inEventOrder(trx);
      return trx
        .insertInto("events")
        .columns([
          "task_id",
          "at",
          "type",
          "from_status",
          "to_status",
          "machine",
          "attempt_id",
          "progress",
          "message",
        ])
        .expression((eb) =>
          eb
            .selectFrom("tasks")
            .select([
              "id",
              sql.lit(at).as("at"),
              sql.lit("waiting").as("type"),
              sql.lit(null).as("from_status"),
              sql.lit(null).as("to_status"),
              sql.lit(null).as("machine"),
              sql.lit(null).as("attempt_id"),
              sql.lit(null).as("progress"),
              sql<string>`${message}`.as("message"),
            ])
            .where("id", "in", taskIds)
            .where("status", "=", "pending"),
        )
        .executeTakeFirst();
    });
    return Number(result.numInsertedOrUpdatedRows ?? 0);
  }

  /** Attempts that were under way: after a gateway restart each is re-attached, not re-run. */
  async liveAttempts(): Promise<AttemptRow[]> {
    return this.db
      .selectFrom("attempts")
      .selectAll()
      .where("status", "in", LIVE_ATTEMPT_STATUSES)
      .orderBy("created_at")
      .execute();
  }

  /**
   * The machines each of `taskIds` has failed on for the machine's fault, so that its next attempt
   * goes elsewhere where it can (a machine whose voice service is down stays up: issue 12).
   */
  async machinesFailed(taskIds: readonly string[]): Promise<Map<string, Set<string>>> {
    const failed = new Map<string, Set<string>>();
    if (taskIds.length === 0) return failed;
    const rows = await this.db
      .selectFrom("attempts")
      .select(["task_id", "machine"])
      .where("task_id", "in", taskIds)
      .where("status", "=", "failed")
      .where("error_kind", "=", "machine")
      .execute();
    for (const row of rows) {
      const machines = failed.get(row.task_id) ?? new Set<string>();
      machines.add(row.machine);
      failed.set(row.task_id, machines);
    }
    return failed;
  }

  async listAttempts(taskId: string): Promise<AttemptRow[]> {
    return this.db
      .selectFrom("attempts")
      .selectAll()
      .where("task_id", "=", taskId)
      .orderBy("created_at")
      .execute();
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * The one way a task's status changes: in one transaction, when the task is still `step.from`
   * (and, with `onlyIfCurrent`, that attempt is still its current one: fencing), runs `write`
   * (attempt rows), sets the task's new status and fields, and writes the event row and callback
   * delivery of the change. Returns undefined, changing nothing, when the task has moved on.
   */
  private async transition(
    taskId: string,
    step: TaskMove &
      MoveWrites & {
        onlyIfCurrent?: string;
        onlyIf?: (task: TaskRow) => boolean;
        onlyIfAsync?: ((trx: Transaction<Database>) => Promise<boolean>) | undefined;
      },
  ): Promise<TaskRow | undefined> {
    const move = allowedTransition(step.from, step.to);
    return this.change(taskId, async (trx, task, at) => {
      if (task.status !== move.from) return undefined;
      if (step.onlyIfCurrent !== undefined && task.current_attempt !== step.onlyIfCurrent) return undefined;
      if (step.onlyIf && !step.onlyIf(task)) return undefined;
      if (step.onlyIfAsync && !(await step.onlyIfAsync(trx))) return undefined;
      return this.applyMove(trx, task, at, move, step);
    });
  }

  /** The writes of one status change, inside the caller's transaction, once it has checked `task`. */
  private async applyMove(
    trx: Transaction<Database>,
    task: TaskRow,
    at: string,
    move: AllowedTransition,
    step: MoveWrites,
  ): Promise<TaskChange> {
    await step.write?.(trx, task, at);
    const updated = await this.updateTask(trx, task.id, {
      ...step.set(task, at),
      status: move.to,
      updated_at: at,
    });
    const event = await this.recordStatus(trx, updated, at, move, step.event(task));
    await addToTaskTotals(trx, [
      ...(move.from === null ? [] : [{ owner: task.owner, status: move.from, n: -1 }]),
      { owner: task.owner, status: move.to, n: 1 },
    ]);
    return { task: updated, event };
  }

  /** The writes of a cancel from `from`; a processing task's current attempt ends `cancelled`. */
  private cancelMove<F extends "pending" | "processing">(
    from: F,
    message: string,
  ): MoveWrites & { from: F; to: "cancelled" } {
    return {
      from,
      to: "cancelled",
      write: async (trx, task, at) => {
        if (from === "processing" && task.current_attempt) {
          await this.endAttempt(trx, task.current_attempt, "cancelled", at, undefined, message);
        }
      },
      set: (_task, at) => ({ completed_at: at, error_message: message, error_kind: null }),
      event: (task) => ({
        machine: from === "processing" ? task.machine : null,
        attempt_id: from === "processing" ? task.current_attempt : null,
        message,
      }),
    };
  }

  private async change(
    taskId: string,
    body: (
      trx: Transaction<Database>,
      task: TaskRow,
      at: string,
    ) => Promise<{ task: TaskRow; event: EventRow } | undefined>,
  ): Promise<TaskRow | undefined> {
    await this.beforeWrite();
    const at = this.stamp();
    const outcome = await this.db.transaction().execute(async (trx) => {
      // Locked until the commit: two changes of one task (a result and a cancel, say) never both
      // read it as it was (on PostgreSQL; SQLite runs one transaction at a time anyway).
      const task = await trx
        .selectFrom("tasks")
        .selectAll()
        .where("id", "=", taskId)
        .forUpdate()
        .executeTakeFirst();
      return task ? body(trx, task, at) : undefined;
    });
    this.forget(taskId);
    if (outcome) this.committed(outcome);
    return outcome?.task;
  }

  private committed(change: TaskChange): void {
    if (change.event.to_status === "pending") this.pending++;
    if (change.event.from_status === "pending") this.pending--;
    this.changes.emit("change", change);
  }

  private async updateTask(
    trx: Transaction<Database>,
    id: string,
    values: Partial<Omit<TaskRow, "id">>,
  ): Promise<TaskRow> {
    return trx.updateTable("tasks").set(values).where("id", "=", id).returningAll().executeTakeFirstOrThrow();
  }

  private async endAttempt(
    trx: Transaction<Database>,
    id: string,
    status: "succeeded" | "failed" | "abandoned" | "cancelled",
    at: string,
    kind?: string,
    message?: string,
  ): Promise<void> {
    const ended = await trx
      .updateTable("attempts")
      .set({ status, ended_at: at, error_kind: kind ?? null, error_message: message ?? null })
      .where("id", "=", id)
      .returning("machine")
      .executeTakeFirst();
    if (ended && (status === "succeeded" || status === "failed"))
      await addToMachineTotals(trx, ended.machine, status, 1);
  }

  private async addEvent(
    trx: Transaction<Database>,
    taskId: string,
    at: string,
    fields: Partial<EventFields> & Pick<EventFields, "type">,
  ): Promise<EventRow> {
    await inEventOrder(trx);
    const event = await trx
      .insertInto("events")
      .values({
        task_id: taskId,
        at,
        type: fields.type,
        from_status: fields.from_status ?? null,
        to_status: fields.to_status ?? null,
        machine: fields.machine ?? null,
        attempt_id: fields.attempt_id ?? null,
        progress: fields.progress ?? null,
        message: fields.message ?? null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    if (this.shared) {
      // Emitted here once committed (`committed`): catchUp() must not emit it a second time.
      if (this.cursor !== undefined) this.mine.add(event.id);
      await notifyGateways(trx, `${GATEWAY_NOTICE.events}:${this.instance}`);
    }
    return event;
  }

  /** A status change: its event, and a callback delivery when the task has a callback_url. */
  private async recordStatus(
    trx: Transaction<Database>,
    task: TaskRow,
    at: string,
    move: AllowedTransition,
    fields: Omit<Partial<EventFields>, "type" | "from_status" | "to_status">,
  ): Promise<EventRow> {
    const event = await this.addEvent(trx, task.id, at, {
      ...fields,
      type: move.event,
      from_status: move.from,
      to_status: move.to,
    });
    if (task.callback_url) {
      const payload = JSON.stringify(callbackPayload(task, event));
      await trx
        .insertInto("callbacks")
        .values(newDelivery({ taskId: task.id, eventId: event.id, url: task.callback_url, payload }, at))
        .execute();
    }
    return event;
  }
}

/** What one status change writes besides the status: attempt rows, task fields, the event's fields. */
interface MoveWrites {
  write?: (trx: Transaction<Database>, task: TaskRow, at: string) => Promise<void>;
  set: (task: TaskRow, at: string) => Partial<Omit<TaskRow, "id" | "status" | "updated_at">>;
  event: (task: TaskRow) => Omit<Partial<EventFields>, "type" | "from_status" | "to_status">;
}

/** The body POSTed to a task's callback_url: the seed's four fields, then more context. */
export function callbackPayload(task: TaskRow, event: EventRow): Record<string, unknown> {
  return {
    task_id: task.id,
    status: task.status,
    completed_at: task.completed_at,
    error_message: task.error_message,
    description: task.description,
    created_at: task.created_at,
    started_at: task.started_at,
    machine: task.machine,
    progress: task.progress,
    event: event.type,
    event_id: event.id,
    at: event.at,
  };
}

/**
 * Whether `term` is still the dispatching gateway's (migration 0012). Read for share: a gateway
 * beginning a newer term (which updates the row) waits for this claim to commit, and a claim after
 * it reads the new epoch.
 */
async function termIsCurrent(trx: Transaction<Database>, term: number): Promise<boolean> {
  const row = await trx
    .selectFrom("dispatcher_term")
    .select("epoch")
    .where("id", "=", 1)
    .forShare()
    .executeTakeFirst();
  return row?.epoch === term;
}

/**
 * Pending tasks in the order they go out (priority, then arrival), as the queue's index
 * (`tasks_queue`, migration 0013) holds them, so the first few are read without sorting the rest.
 */
export function pendingInQueueOrder(
  db: Kysely<Database> | Transaction<Database>,
  limit: number,
  upTo: TaskNeed = "voice_clone",
) {
  let query = db.selectFrom("tasks").selectAll().where("status", "=", "pending");
  if (TASK_NEEDS.indexOf(upTo) < TASK_NEEDS.indexOf("tts")) query = query.where("speech", "is", null);
  else if (upTo === "tts") query = query.where("voice_id", "is", null);
  return query.orderBy("priority", "desc").orderBy("seq").limit(limit);
}

/**
 * A text task's audio columns until it is spoken (schema.ts, `speech`): no file yet, and the
 * estimated length, which placement and the task's view use meanwhile.
 */
function textPlaceholder(text: string): StoredAudio {
  return { sha256: "", name: "", bytes: 0, duration: estimateSpeechSeconds(text) };
}

/** The message of the attempt's latest progress row; null when it has none (or it said nothing). */
async function lastStep(
  trx: Transaction<Database>,
  taskId: string,
  attemptId: string,
): Promise<string | null> {
  // Read backwards along the task's own events (index events_task), which are few.
  const row = await trx
    .selectFrom("events")
    .select("message")
    .where("task_id", "=", taskId)
    .where("attempt_id", "=", attemptId)
    .where("type", "=", "progress")
    .orderBy("id", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.message ?? null;
}
