import {
  ColumnDefinitionNode,
  DataTypeNode,
  type Expression,
  GeneratedNode,
  type Kysely,
  type KyselyPlugin,
  OperationNodeTransformer,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PostgresAdapter,
  type QueryResult,
  type RootOperationNode,
  SelectQueryNode,
  sql,
  type UnknownRow,
} from "kysely";

/**
 * The few places where SQLite and PostgreSQL need different SQL, so that every store class is
 * written once against Kysely's builder and runs on either (issue 13).
 *
 * The store's code is written for PostgreSQL's concurrency: a transaction that reads a row and
 * then writes it depending on what it read locks the row (`forUpdate()`), because on PostgreSQL
 * the gateway's pool runs transactions side by side. SQLite runs one transaction at a time over
 * its one connection, which already gives what the lock asks for; `WithoutRowLocks` drops the
 * clause there, since SQLite has no syntax for it.
 */

/**
 * Whether `db` (or a transaction of it) is on PostgreSQL. The adapter is where Kysely records the
 * dialect; its own Migrator reads it the same way.
 */
export function isPostgres(db: OnDialect): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

/** A Kysely instance or transaction of any schema. */
type OnDialect = Pick<Kysely<unknown>, "getExecutor">;

type SeqTable = "tasks" | "avatars" | "voices";

/**
 * The next arrival number of `table`'s `seq` column, as the value of an insert. PostgreSQL numbers
 * arrivals with an identity (POSTGRES_AFTER in migrations.ts): two transactions inserting at once
 * get different numbers, in the order they asked. SQLite has one writer at a time, so the largest
 * number so far plus one, read inside the insert, cannot be taken twice there.
 */
export function nextSeq(db: OnDialect, table: SeqTable): Expression<number> {
  return isPostgres(db)
    ? sql<number>`default`
    : sql<number>`(select coalesce(max(seq), 0) + 1 from ${sql.table(table)})`;
}

const EVENT_ORDER_LOCK = 0x6d68_6576; // "mhev"
const orderedTransactions = new WeakSet<object>();

/**
 * Makes the events `trx` is about to write become visible in the order of their ids. Readers
 * rely on it: an SSE stream skips what it already sent by id, and a client that reconnects with
 * `Last-Event-ID` is replayed the ids above it, so an event that committed after a higher id was
 * read would be lost to both. SQLite commits one transaction at a time, in id order already; on
 * PostgreSQL, ids are drawn when rows are inserted and transactions commit in any order, so the
 * transactions that write events take turns from their first event to their commit (a
 * transaction-level advisory lock, across every gateway on the database). Called before each
 * event insert; the lock is taken once per transaction.
 */
export async function inEventOrder(trx: OnDialect): Promise<void> {
  if (!isPostgres(trx) || orderedTransactions.has(trx)) return;
  await sql`select pg_advisory_xact_lock(${sql.lit(EVENT_ORDER_LOCK)})`.execute(trx);
  orderedTransactions.add(trx);
}

/**
 * The channel on which the gateways sharing a PostgreSQL database tell each other what changed
 * (issue 13; gateway/coordination/change-feed.ts listens). Payloads are short: a kind, the writing
 * gateway's instance id, and for some kinds a task id.
 */
export const CHANGE_CHANNEL = "multi_heygem";

/**
 * Tells the other gateways on the database that `payload` happened, when `db`'s transaction (if it
 * is one) commits: PostgreSQL delivers a NOTIFY at commit and drops it on rollback, so nobody hears
 * of a change that did not happen. Identical payloads of one transaction arrive once. SQLite has
 * one gateway, which needs no telling.
 */
export async function notifyGateways(db: OnDialect, payload: string): Promise<void> {
  if (!isPostgres(db)) return;
  await sql`select pg_notify(${CHANGE_CHANNEL}, ${payload})`.execute(db);
}

/** SQLite: row locks (`for update`, `for share`) are dropped; its transactions never overlap. */
export class WithoutRowLocks implements KyselyPlugin {
  transformQuery({ node }: PluginTransformQueryArgs): RootOperationNode {
    if (!SelectQueryNode.is(node) || !node.endModifiers?.length) return node;
    const kept = node.endModifiers.filter((m) => m.modifier === undefined || !ROW_LOCKS.has(m.modifier));
    return { ...node, endModifiers: kept };
  }

  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
}

const ROW_LOCKS = new Set(["ForUpdate", "ForNoKeyUpdate", "ForShare", "ForKeyShare", "NoWait", "SkipLocked"]);

/**
 * PostgreSQL's reading of the migrations, which are written in SQLite's types: SQLite's `integer`
 * holds 64 bits and its `real` is a double, where PostgreSQL's are 32-bit and single precision
 * (a 3 GB upload's size would not fit, a duration would lose digits), so they become `bigint` and
 * `double precision`; SQLite's `autoincrement` key becomes an identity. Only the migrations run
 * through it: the queries' SQL is the same on both.
 */
export class PostgresDdl implements KyselyPlugin {
  private readonly transformer = new PostgresDdlTransformer();

  transformQuery({ node, queryId }: PluginTransformQueryArgs): RootOperationNode {
    return this.transformer.transformNode(node, queryId);
  }

  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
}

const POSTGRES_TYPES: Partial<Record<string, DataTypeNode["dataType"]>> = {
  integer: "bigint",
  real: "double precision",
};

class PostgresDdlTransformer extends OperationNodeTransformer {
  protected override transformDataType(node: DataTypeNode): DataTypeNode {
    const type = POSTGRES_TYPES[node.dataType];
    return type ? DataTypeNode.create(type) : node;
  }

  protected override transformColumnDefinition(node: ColumnDefinitionNode): ColumnDefinitionNode {
    const column = super.transformColumnDefinition(node);
    if (!column.autoIncrement) return column;
    return ColumnDefinitionNode.cloneWith(column, {
      autoIncrement: false,
      generated: GeneratedNode.create({ byDefault: true, identity: true }),
    });
  }
}
