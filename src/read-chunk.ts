/**
 * How much of a file one read takes when the file is streamed: a template to a worker, a result to
 * the gateway or a client, any file through a hash. Node's default, 64 KiB, makes a 100 MB
 * template 1,600 round trips to libuv's thread pool and as many socket writes; read 1 MiB at a
 * time, the same file crossed loopback in under half the time for a third of the CPU (issue 14).
 * Memory stays one chunk per stream under way, whatever the size of the file.
 */
export const READ_CHUNK_BYTES = 1024 * 1024;
