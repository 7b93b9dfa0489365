/**
 * How much of a file one read takes when the file is streamed: a template to a worker, a result to
 * the gateway or a client, any file through a hash. Node's default, 64 KiB, makes a 100 MB
 * template 1,600 round trips to libuv's thread pool and as many socket writes; read 1 MiB at a
 * time, the same file crossed loopback in under half the time for a third of the CPU (issue 14).
 * Memory stays one chunk per stream under way, whatever the size of the file.
 */
export const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * The chunk for a file of `bytes`: a small file is read in a chunk of its own size. Each read
 * allocates its whole chunk, whatever the file holds: a megabyte for each 16 kB audio made eight
 * times as many garbage collections (one every 15 files streamed, 26 µs of collection per file
 * against 8).
 */
export function readChunkFor(bytes: number): number {
  return Math.max(1, Math.min(READ_CHUNK_BYTES, bytes));
}
