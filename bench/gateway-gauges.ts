import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { cpuSecondsOf, memoryOf, openFds } from "./harness.js";
import { MB } from "./stats.js";

/** One look at a running gateway from outside. */
export interface GatewayReading {
  rssMB: number;
  fds: number;
  /** The SQLite file and its write-ahead log. */
  dbMB: number;
  walMB: number;
  /** V8's heap in use, memory outside it (Buffers), major collections so far (GET /metrics). */
  heapMB: number;
  externalMB: number;
  majorGcs: number;
  /** Rows in the tasks table; the store's pages as a reader sees them (WAL included), in use and free. */
  taskRows: number;
  usedMB: number;
  freeMB: number;
  /** CPU seconds the process has used. */
  cpuSec: number;
}

const SQLITE_FILE = "multi-heygem.db";

/**
 * What the soak watches of a gateway with a SQLite store: /proc for its memory, descriptors and
 * CPU; its GET /metrics for V8's heap; its data dir for the store's files; and the store itself
 * through a read-only connection (WAL lets it read while the gateway writes) for rows and pages.
 */
export class GatewayGauges {
  readonly dbPath: string;
  private db: SQLite.Database | undefined;

  constructor(
    private readonly pid: number,
    private readonly url: string,
    private readonly dataDir: string,
  ) {
    this.dbPath = join(dataDir, SQLITE_FILE);
  }

  async read(): Promise<GatewayReading> {
    const [memory, fds, cpuSec, db, wal, node] = await Promise.all([
      memoryOf(this.pid),
      openFds(this.pid),
      cpuSecondsOf(this.pid),
      fileSize(this.dbPath),
      fileSize(`${this.dbPath}-wal`),
      this.nodeMemory(),
    ]);
    if (memory === undefined || fds === undefined || cpuSec === undefined)
      throw new Error(`the gateway (pid ${this.pid}) is gone`);
    return {
      rssMB: memory.rssBytes / MB,
      fds,
      cpuSec,
      dbMB: db / MB,
      walMB: wal / MB,
      ...node,
      ...this.store(),
    };
  }

  /** Resident memory and V8's heap in use, now. */
  async memory(): Promise<{ rssMB: number; heapMB: number }> {
    const [memory, node] = await Promise.all([memoryOf(this.pid), this.nodeMemory()]);
    if (memory === undefined) throw new Error(`the gateway (pid ${this.pid}) is gone`);
    return { rssMB: memory.rssBytes / MB, heapMB: node.heapMB };
  }

  /** Files in the blob store (uploads and results). */
  async blobFiles(): Promise<number> {
    const entries = await readdir(join(this.dataDir, "blobs"), {
      recursive: true,
      withFileTypes: true,
    }).catch(() => []);
    return entries.filter((e) => e.isFile()).length;
  }

  close(): void {
    this.db?.close();
  }

  private store(): Pick<GatewayReading, "taskRows" | "usedMB" | "freeMB"> {
    this.db ??= new SQLite(this.dbPath, { readonly: true, fileMustExist: true, timeout: 1_000 });
    const taskRows = (this.db.prepare("SELECT count(*) AS n FROM tasks").get() as { n: number }).n;
    const pageSize = Number(this.db.pragma("page_size", { simple: true }));
    const pages = Number(this.db.pragma("page_count", { simple: true }));
    const free = Number(this.db.pragma("freelist_count", { simple: true }));
    return { taskRows, usedMB: ((pages - free) * pageSize) / MB, freeMB: (free * pageSize) / MB };
  }

  /** prom-client's default metrics on the gateway's GET /metrics. */
  private async nodeMemory(): Promise<Pick<GatewayReading, "heapMB" | "externalMB" | "majorGcs">> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const value = (pattern: RegExp, otherwise = Number.NaN) => Number(pattern.exec(text)?.[1] ?? otherwise);
    return {
      heapMB: value(/^\w*nodejs_heap_size_used_bytes (\S+)$/m) / MB,
      externalMB: value(/^\w*nodejs_external_memory_bytes (\S+)$/m) / MB,
      // No line until the first major collection.
      majorGcs: value(/^\w*nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m, 0),
    };
  }
}

async function fileSize(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.size ?? 0;
}
