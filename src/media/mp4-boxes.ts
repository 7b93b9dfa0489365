import type { FileHandle } from "node:fs/promises";

/**
 * ISO BMFF (MP4/MOV) boxes, read from untrusted files: every size is checked against its parent
 * before anything is read, so a lying header ends the reading (`BoxError`) rather than a read out
 * of bounds or a loop. Callers treat any `BoxError` as "not for an in-process reading".
 */
export class BoxError extends Error {}

export interface Box {
  readonly type: string;
  /** The payload's first byte, after the size and type (and a 64-bit size). */
  readonly start: number;
  /** One past the payload's last byte. */
  readonly end: number;
}

/**
 * The header of the box at `at`: `readable` bytes of `buf` from there can be read, and the box may
 * take at most `room` bytes (what is left of its parent or of the file). Throws BoxError otherwise.
 */
function header(buf: Buffer, at: number, readable: number, room: number): Box {
  if (readable < 8) throw new BoxError("a box header runs past its parent");
  const size32 = buf.readUInt32BE(at);
  const type = buf.toString("latin1", at + 4, at + 8);
  let headerBytes = 8;
  let size = size32;
  if (size32 === 1) {
    if (readable < 16) throw new BoxError("a box header runs past its parent");
    const size64 = buf.readBigUInt64BE(at + 8);
    if (size64 > BigInt(room)) throw new BoxError(`box ${type} runs past its parent`);
    size = Number(size64);
    headerBytes = 16;
  } else if (size32 === 0) {
    // "To the end of the file" (or of the parent).
    size = room;
  }
  if (size < headerBytes || size > room) throw new BoxError(`box ${type} runs past its parent`);
  return { type, start: headerBytes, end: size };
}

/** The boxes laid end to end in `buf` between `start` and `end`, in order. */
export function* boxes(buf: Buffer, start = 0, end = buf.length): Generator<Box> {
  let at = start;
  while (at < end) {
    const box = header(buf, at, end - at, end - at);
    yield { type: box.type, start: at + box.start, end: at + box.end };
    at += box.end;
  }
}

/** The first child of `parent` of this type, if any. */
export function child(buf: Buffer, parent: Box, type: string): Box | undefined {
  for (const box of boxes(buf, parent.start, parent.end)) if (box.type === type) return box;
  return undefined;
}

/** The box at the end of a path of first children (`["mdia", "minf", "stbl"]`), if all are there. */
export function descend(buf: Buffer, parent: Box, path: readonly string[]): Box | undefined {
  let at: Box | undefined = parent;
  for (const type of path) {
    at = at && child(buf, at, type);
  }
  return at;
}

/** Checks that a full box (version and flags first) holds `bytes` after them; returns its version. */
export function fullBox(buf: Buffer, box: Box, bytes: number): number {
  if (box.end - box.start < 4 + bytes) throw new BoxError(`box ${box.type} is too short`);
  return buf.readUInt8(box.start);
}

/** Top-level boxes a file may hold before its `moov`; more than this is not a plain MP4 or MOV. */
const MAX_TOP_LEVEL_BOXES = 64;

/**
 * Finds a file's `moov` box by stepping over the top-level boxes (a read of 16 bytes each: a
 * 100 MB template with its index at the end costs four reads, not a scan), and answers its
 * payload if that is at most `maxBytes`. Answers `undefined` for a file that does not begin with
 * `ftyp` (not an MP4/MOV this reader knows), has no `moov`, or a larger one.
 */
export async function readMoov(
  file: FileHandle,
  fileSize: number,
  maxBytes: number,
): Promise<Buffer | undefined> {
  const head = Buffer.alloc(16);
  let at = 0;
  for (let n = 0; n < MAX_TOP_LEVEL_BOXES && at < fileSize; n++) {
    const { bytesRead } = await file.read(head, 0, 16, at);
    const box = header(head, 0, bytesRead, fileSize - at);
    if (n === 0 && box.type !== "ftyp") return undefined;
    if (box.type === "moov") {
      const length = box.end - box.start;
      if (length > maxBytes) return undefined;
      const buf = Buffer.alloc(length);
      const read = await file.read(buf, 0, length, at + box.start);
      if (read.bytesRead !== length) return undefined;
      return buf;
    }
    at += box.end;
  }
  return undefined;
}

/**
 * `readMoov` for a file held whole in memory: the payload of its `moov` (a view of `buf`) if it
 * begins with `ftyp` and its `moov` is at most `maxBytes`. Throws BoxError for a malformed box.
 */
export function moovIn(buf: Buffer, maxBytes: number): Buffer | undefined {
  if (buf.length < 8 || buf.toString("latin1", 4, 8) !== "ftyp") return undefined;
  let n = 0;
  for (const box of boxes(buf)) {
    if (box.type === "moov")
      return box.end - box.start <= maxBytes ? buf.subarray(box.start, box.end) : undefined;
    if (++n >= MAX_TOP_LEVEL_BOXES) return undefined;
  }
  return undefined;
}
