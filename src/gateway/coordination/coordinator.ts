import { hostname } from "node:os";
import { errorMessage } from "../../errors.js";
import { linkSignals } from "../../linked-signal.js";
import type { Logger } from "../../logger.js";
import { notifyGateways } from "../../store/dialect.js";
import type { DispatcherTermStore } from "../../store/dispatcher-term-store.js";
import { redactUrl } from "../../store/postgres.js";
import { openLink, type PostgresLink } from "../../store/postgres-link.js";
import { GATEWAY_NOTICE, type TaskStore } from "../../store/task-store.js";
import { delay, systemClock } from "../clock.js";

/**
 * What only the dispatching gateway does (dispatch-term.ts): place tasks and follow their
 * attempts, enforce deadlines, sweep retention, send callbacks. Begun when this gateway is elected,
 * ended (attempts left running on their machines, to be re-attached) when it is deposed or stops.
 */
export interface Duties {
  /** `term`: the epoch that fences this term's slot claims; undefined for a gateway alone (SQLite). */
  begin(term: number | undefined): Promise<void>;
  end(): Promise<void>;
}

/** Notices about state other than tasks, which every gateway applies (`announce`). */
export const SHARED_NOTICE = {
  /** Drain or resume of a machine (machine_flags). */
  machines: "m",
  /** A callback delivery was queued by hand (POST /tasks/{id}/callbacks): the sender should look. */
  callbacks: "c",
} as const;
type SharedNotice = (typeof SHARED_NOTICE)[keyof typeof SHARED_NOTICE];

export interface CoordinatorOptions {
  /** The PostgreSQL store's URL; undefined for SQLite, whose one gateway always dispatches. */
  readonly url: string | undefined;
  readonly store: TaskStore;
  readonly terms: DispatcherTermStore;
  readonly duties: Duties;
  readonly logger: Logger;
  /** Another gateway announced a change of machine flags / a callback to send. */
  readonly onNotice: (kind: SharedNotice) => void;
  /** How often a gateway that does not dispatch tries the lock (and checks its link). */
  readonly campaignEveryMs?: number;
  /** How often the dispatching gateway checks that its session (and lock) lives. */
  readonly pingEveryMs?: number;
  /** An unanswered check past this deposes the dispatching gateway. */
  readonly pingTimeoutMs?: number;
  /** Reads the other gateways' events this often even without a notice (one may be lost). */
  readonly catchUpEveryMs?: number;
}

/**
 * How several gateways share one PostgreSQL store (issue 13, design.md "Several gateways"): every
 * gateway serves the whole API; one at a time dispatches, elected by a session advisory lock that
 * the server releases when that gateway's session ends (kill -9, a lost host, a cut network). The
 * others try the lock every `campaignEveryMs`, so one of them takes over within about a second of
 * the server noticing, and begins a new term: it re-attaches to the attempts under way, as a
 * restarted gateway does. Changes travel as NOTIFYs on one channel, each gateway reading what the
 * others committed with `TaskStore.catchUp()`. With SQLite there is one gateway, which dispatches.
 */
export class Coordinator {
  private readonly name = `${hostname()} pid ${process.pid}`;
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private leading = false;
  private epoch: number | undefined;
  private linkDown = false;

  constructor(private readonly o: CoordinatorOptions) {}

  /** Whether this gateway dispatches now. */
  get dispatching(): boolean {
    return this.leading;
  }

  /** The current term's epoch while this gateway dispatches on PostgreSQL. */
  get term(): number | undefined {
    return this.epoch;
  }

  get gatewayName(): string {
    return this.name;
  }

  /**
   * Starts dispatching (SQLite) or takes part in the election (PostgreSQL). Resolves after the
   * first round, so that a gateway alone on its database dispatches before it takes requests.
   */
  async start(): Promise<void> {
    if (this.o.url === undefined) {
      this.leading = true;
      await this.o.duties.begin(undefined);
      return;
    }
    let firstRound: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      firstRound = resolve;
    });
    this.loop = this.run(this.o.url, firstRound);
    await started;
  }

  /** Tells the other gateways on the database of `kind` (nothing to do on SQLite). */
  async announce(kind: SharedNotice): Promise<void> {
    await notifyGateways(this.o.store.db, `${kind}:${this.o.store.instance}`);
  }

  async close(): Promise<void> {
    // The loop ends the term, then the session: the lock outlives every step of the term.
    this.stop.abort();
    if (this.loop) await this.loop;
    else if (this.leading) await this.endTerm("the gateway stops");
  }

  private async run(url: string, firstRound: () => void): Promise<void> {
    const every = this.o.campaignEveryMs ?? 1000;
    const pingEvery = this.o.pingEveryMs ?? 1000;
    const catchUpEvery = this.o.catchUpEveryMs ?? 2000;
    let lastCatchUp = 0;
    let following = false;
    while (!this.stop.signal.aborted) {
      let link: PostgresLink;
      try {
        // In the loop, not before it: this gateway already listens, and a database out of reach
        // for a moment now must not end it (the chaos test cut it just then).
        if (!following) await this.o.store.followOthers();
        following = true;
        link = await openLink(url, {
          timeoutMs: this.o.pingTimeoutMs ?? 3000,
          onNotice: (payload) => this.heard(payload),
        });
      } catch (err) {
        if (!this.linkDown)
          this.o.logger.error(
            { err: errorMessage(err), store: redactUrl(url) },
            "cannot reach the store to coordinate with the other gateways; trying again every second",
          );
        this.linkDown = true;
        firstRound();
        await delay(systemClock, every, this.stop.signal);
        continue;
      }
      if (this.linkDown) this.o.logger.info("coordination with the other gateways restored");
      this.linkDown = false;
      // One wake-up for the life of the link: a reaction on `link.ended`, or a link with the
      // stop signal, made once per round would each stay until the link ends, a few a second.
      const ended = new AbortController();
      void link.ended.then(() => ended.abort());
      const wake = linkSignals([this.stop.signal, ended.signal]);
      try {
        while (!this.stop.signal.aborted && !link.lost) {
          if (!this.leading) {
            if (await link.tryLead()) await this.beginTerm();
          } else await link.ping();
          firstRound();
          if (Date.now() - lastCatchUp >= catchUpEvery) {
            lastCatchUp = Date.now();
            // What a lost notice (or the time this link was down) hid. A failure here is the
            // pool's, not this session's: it deposes nobody, the next round tries again.
            await this.o.store
              .catchUp()
              .catch((err: unknown) =>
                this.o.logger.warn({ err: errorMessage(err) }, "reading the other gateways' changes failed"),
              );
          }
          await delay(systemClock, this.leading ? pingEvery : every, wake.signal);
        }
      } catch (err) {
        if (!this.stop.signal.aborted)
          this.o.logger.error({ err: errorMessage(err) }, "the coordination link with the store failed");
      } finally {
        wake.dispose();
      }
      firstRound();
      // Ended before the session goes: its lock must outlive every step this term still takes.
      if (this.leading)
        await this.endTerm(
          this.stop.signal.aborted
            ? "the gateway stops"
            : "lost the session that holds the dispatcher's lock",
        );
      link.close();
      if (!this.stop.signal.aborted && link.lost) {
        this.o.logger.warn("the coordination link with the store was lost; reconnecting");
        this.linkDown = true;
        await delay(systemClock, every, this.stop.signal);
      }
    }
  }

  private async beginTerm(): Promise<void> {
    const epoch = await this.o.terms.begin(this.name);
    this.leading = true;
    this.epoch = epoch;
    this.o.logger.info(
      { term: epoch },
      "this gateway dispatches now (elected among the gateways on the store)",
    );
    await this.o.duties.begin(epoch);
  }

  private async endTerm(reason: string): Promise<void> {
    this.leading = false;
    const term = this.epoch;
    this.epoch = undefined;
    await this.o.duties.end();
    // Stopping is the plan; losing the session is worth a warning.
    const log = this.stop.signal.aborted ? this.o.logger.info : this.o.logger.warn;
    log.call(this.o.logger, { term, reason }, "this gateway no longer dispatches");
  }

  private heard(payload: string): void {
    const [kind, instance, taskId] = payload.split(":");
    if (instance === this.o.store.instance) return;
    const failed = (err: unknown) =>
      this.o.logger.warn({ err: errorMessage(err) }, "reading another gateway's change failed");
    if (kind === GATEWAY_NOTICE.events) this.o.store.catchUp().catch(failed);
    else if (kind === GATEWAY_NOTICE.progress && taskId) this.o.store.progressElsewhere(taskId).catch(failed);
    else if (kind === SHARED_NOTICE.machines || kind === SHARED_NOTICE.callbacks) this.o.onNotice(kind);
  }
}
