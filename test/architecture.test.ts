import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The direction of dependencies between the folders of src/ (house-style.md, "Layout shows the
 * architecture"), read from the import statements themselves: type-only imports, re-exports and
 * dynamic `import()` count like any other, since each ties one folder to another just the same.
 *
 * Files directly in src/ (errors.ts, logger.ts…) are the shared base: every folder may import them
 * and they import no folder. cli.ts is the exception: the program's entry, which wires the folders
 * together and which nothing imports.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  // HTTP plumbing shared by servers and clients (error handler, replies checked against schemas).
  http: [],
  protocol: ["http"],
  media: [],
  blobs: [],
  // The store keeps each blob's media facts (media/probe.ts's MediaInfo), by content hash.
  store: ["media"],
  engines: ["protocol", "media", "http"],
  // Settings are checked at start-up with the parsers of what they configure (command templates).
  // …and with the same address rules as the servers (a worker's --host: loopback or not).
  config: ["engines", "http"],
  worker: ["protocol", "blobs", "engines", "media", "config", "http"],
  gateway: ["protocol", "store", "blobs", "engines", "media", "config", "http", "worker"],
  // The typed client (multi-heygem/client) runs in Node and in browsers: it takes the API's shapes
  // from the gateway's schemas as types only, so no server code comes with it.
  client: ["http", "gateway"],
  // The CLI's client commands drive a gateway through the typed client only, never its internals.
  commands: ["client"],
};

/** The one file of gateway/ the client may name, and only in `import type`. */
const API_SCHEMAS = "gateway/api/schemas.ts";

/** The one file of worker/ the gateway may import: the embedded mode calls `startWorker()` like any caller. */
const WORKER_ENTRY = "worker/agent.ts";
const PROGRAM_ENTRY = "cli.ts";
const BASE = "(base)";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

interface Edge {
  /** Paths relative to src/, with forward slashes. */
  readonly from: string;
  readonly to: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

function srcPath(absolute: string): string {
  return relative(SRC, absolute).split(sep).join("/");
}

/** Every module specifier in the file: imports, `export … from`, and `import()`. */
function specifiers(path: string): string[] {
  const text = readFileSync(path, "utf8");
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The src/ file a relative specifier names (`./x.js` is written for `./x.ts`); undefined for packages. */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const target = resolve(dirname(from), specifier).replace(/\.js$/, ".ts");
  if (!existsSync(target)) throw new Error(`${srcPath(from)} imports ${specifier}, which does not exist`);
  return srcPath(target);
}

function folderOf(file: string): string {
  return file.includes("/") ? (file.split("/")[0] ?? BASE) : BASE;
}

const edges: Edge[] = sourceFiles(SRC).flatMap((path) =>
  specifiers(path)
    .map((specifier) => resolveSpecifier(path, specifier))
    .filter((to) => to !== undefined)
    .map((to) => ({ from: srcPath(path), to })),
);

/** Edges between two different folders (or a folder and the base), with cli.ts left out. */
const crossing = edges.filter(
  (e) => e.from !== PROGRAM_ENTRY && e.to !== PROGRAM_ENTRY && folderOf(e.from) !== folderOf(e.to),
);

const show = (list: readonly Edge[]) => list.map((e) => `${e.from} → ${e.to}`);

/** Folders that reach each other through imports: each group of two or more is a cycle. */
function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const reach = (from: string): Set<string> => {
    const seen = new Set<string>();
    const stack = [from];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      for (const next of graph.get(node) ?? []) {
        if (!seen.has(next)) {
          seen.add(next);
          stack.push(next);
        }
      }
    }
    return seen;
  };
  const reachable = new Map([...graph.keys()].map((node) => [node, reach(node)]));
  const groups = new Map<string, string[]>();
  for (const [node, from] of reachable) {
    const group = [...from].filter((other) => reachable.get(other)?.has(node)).sort();
    if (group.length > 1) groups.set(group.join(" ↔ "), group);
  }
  return [...groups.values()];
}

describe("architecture: imports between the folders of src/", () => {
  it("reads the imports (the parser is not silently finding nothing)", () => {
    expect(edges).toContainEqual({ from: "gateway/server.ts", to: WORKER_ENTRY });
    expect(edges.some((e) => e.from === PROGRAM_ENTRY && e.to === "gateway/server.ts")).toBe(true);
  });

  it("every folder of src/ has its place in the table of allowed directions", () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    expect(folders.filter((f) => !Object.hasOwn(MAY_IMPORT, f))).toEqual([]);
  });

  it("has no cycle between folders", () => {
    const graph = new Map<string, Set<string>>();
    for (const e of crossing) {
      const from = folderOf(e.from);
      const targets = graph.get(from) ?? new Set<string>();
      targets.add(folderOf(e.to));
      graph.set(from, targets);
    }
    const found = cycles(graph).map((group) => ({
      folders: group.join(" ↔ "),
      imports: show(
        crossing.filter((e) => group.includes(folderOf(e.from)) && group.includes(folderOf(e.to))),
      ),
    }));
    expect(found).toEqual([]);
  });

  it("each folder imports only the folders it may (and the shared base)", () => {
    const wrong = crossing.filter((e) => {
      const from = folderOf(e.from);
      const to = folderOf(e.to);
      if (from === BASE || to === BASE) return false;
      return !(MAY_IMPORT[from] ?? []).includes(to);
    });
    expect(show(wrong)).toEqual([]);
  });

  it("the files directly in src/ import no folder", () => {
    expect(show(crossing.filter((e) => folderOf(e.from) === BASE))).toEqual([]);
  });

  it("the gateway reaches the worker only through its public entry", () => {
    const internals = crossing.filter(
      (e) => folderOf(e.from) === "gateway" && folderOf(e.to) === "worker" && e.to !== WORKER_ENTRY,
    );
    expect(show(internals)).toEqual([]);
  });

  it("config, engines, store, blobs, protocol, media and http never import the gateway or the worker", () => {
    const lower = new Set(["engines", "store", "blobs", "protocol", "media", "http", "config"]);
    const upward = crossing.filter(
      (e) => lower.has(folderOf(e.from)) && (folderOf(e.to) === "gateway" || folderOf(e.to) === "worker"),
    );
    expect(show(upward)).toEqual([]);
  });

  it("the client takes only the API's schemas from the gateway, as types", () => {
    const wrong = crossing.filter(
      (e) => folderOf(e.from) === "client" && folderOf(e.to) === "gateway" && e.to !== API_SCHEMAS,
    );
    expect(show(wrong)).toEqual([]);
    const valueImports = sourceFiles(join(SRC, "client")).filter((path) =>
      /^import (?!type )[^;]*from "\.\.\/gateway\//m.test(readFileSync(path, "utf8")),
    );
    expect(valueImports.map(srcPath)).toEqual([]);
  });

  it("nothing imports the program's entry", () => {
    expect(show(edges.filter((e) => e.to === PROGRAM_ENTRY))).toEqual([]);
  });
});
