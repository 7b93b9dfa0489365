import { hostname } from "node:os";
import pg from "pg";
import { CHANGE_CHANNEL } from "./dialect.js";
import { redactUrl, unreachable } from "./postgres.js";

/**
 * A gateway's own connection to a PostgreSQL store for coordinating with the other gateways on it
 * (issue 13): it LISTENs to what they announce, and it is the session that holds the dispatcher's
 * advisory lock while this gateway dispatches. The server drops a session's advisory locks when
 * the session ends, however the process dies, so a dead dispatcher never holds the lock.
 */
export interface PostgresLink {
  /** Tries to take the dispatcher's lock; true once this session holds it (again). */
  tryLead(): Promise<boolean>;
  /**
   * Resolves once the server answered within the link's deadline; otherwise the link is ended
   * and this throws. While it answers, the session, and with it the lock, is alive.
   */
  ping(): Promise<void>;
  /** Settles once the connection has failed or was closed; `lost` says which. */
  readonly ended: Promise<void>;
  readonly lost: boolean;
  /** Ends the session: the lock, if held, is released by the server. */
  close(): void;
}

export interface LinkOptions {
  /** How long a ping may take before the session is taken for lost. */
  readonly timeoutMs: number;
  /** A NOTIFY on the gateways' channel, from any gateway (this one included). */
  readonly onNotice: (payload: string) => void;
}

/** The dispatcher's lock: the session holding it dispatches for every gateway on the database. */
const DISPATCHER_LOCK = 0x6d68_6730; // "mhg0"
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The server's side of a cut network: a session whose peer stops answering is dropped (and its
 * lock released) after about idle + interval × count = 11 s, always later than the holder itself
 * gives up (a ping unanswered for `timeoutMs`, a few seconds): the deposed dispatcher has stopped
 * before the next one can begin.
 */
const SERVER_KEEPALIVE = { idle: 5, interval: 2, count: 3 };

export async function openLink(url: string, options: LinkOptions): Promise<PostgresLink> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 1000,
    application_name: `multi-heygem gateway (pid ${process.pid} on ${hostname()})`,
  });
  let lost = false;
  let closed = false;
  let settle: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const end = (failed: boolean) => {
    if (closed) return;
    closed = true;
    lost = failed;
    // A silent server would keep end() waiting for its goodbye: the socket is cut instead.
    streamOf(client)?.destroy();
    void client.end().catch(() => undefined);
    settle();
  };
  client.on("error", () => end(true));
  client.on("end", () => end(true));
  client.on("notification", (message) => {
    if (message.channel === CHANGE_CHANNEL && message.payload !== undefined)
      options.onNotice(message.payload);
  });
  try {
    await client.connect();
    await client.query(
      `select set_config('tcp_keepalives_idle', $1, false), set_config('tcp_keepalives_interval', $2, false),
              set_config('tcp_keepalives_count', $3, false)`,
      [String(SERVER_KEEPALIVE.idle), String(SERVER_KEEPALIVE.interval), String(SERVER_KEEPALIVE.count)],
    );
    await client.query(`listen ${CHANGE_CHANNEL}`);
  } catch (err) {
    end(false);
    throw unreachable(url, err);
  }

  const withDeadline = async <T>(query: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        end(true);
        reject(new Error(`${redactUrl(url)} did not answer within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
    });
    try {
      return await Promise.race([query, late]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    async tryLead() {
      const { rows } = await withDeadline(
        client.query<{ locked: boolean }>("select pg_try_advisory_lock($1) as locked", [DISPATCHER_LOCK]),
      );
      return rows[0]?.locked === true;
    },
    async ping() {
      await withDeadline(client.query("select 1"));
    },
    ended,
    get lost() {
      return lost;
    },
    close: () => end(false),
  };
}

/** node-postgres keeps its socket on `connection.stream`, which its typings do not show. */
function streamOf(client: pg.Client): { destroy(): void } | undefined {
  return (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
}
