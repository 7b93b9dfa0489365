/**
 * A multipart/form-data body built as a stream, so that a client can count the bytes as they go
 * out (upload progress, which fetch's FormData cannot report) and large files are never held in
 * memory. The length is known up front when every file's size is, and is then sent as
 * Content-Length, which proxies prefer to chunked uploads.
 */
export interface UploadPart {
  name: string;
  /** Text fields have a value; files their content and a file name. */
  value?: string;
  file?: { content: Blob | ReadableStream<Uint8Array>; filename: string };
}

export interface UploadBody {
  readonly contentType: string;
  /** Undefined when a file is a stream of unknown length (the body then goes chunked). */
  readonly length: number | undefined;
  stream(onBytes: (sent: number) => void): ReadableStream<Uint8Array>;
}

export function uploadBody(parts: readonly UploadPart[]): UploadBody {
  const boundary = `----multi-heygem-${crypto.randomUUID()}`;
  const encoder = new TextEncoder();
  const pieces: (Uint8Array | Blob | ReadableStream<Uint8Array>)[] = [];
  for (const part of parts) {
    const filename = part.file ? `; filename="${quote(part.file.filename)}"` : "";
    const type = part.file ? "\r\nContent-Type: application/octet-stream" : "";
    pieces.push(
      encoder.encode(
        `--${boundary}\r\nContent-Disposition: form-data; name="${quote(part.name)}"${filename}${type}\r\n\r\n`,
      ),
    );
    pieces.push(part.file ? part.file.content : encoder.encode(part.value ?? ""));
    pieces.push(encoder.encode("\r\n"));
  }
  pieces.push(encoder.encode(`--${boundary}--\r\n`));
  let total = 0;
  let known = true;
  for (const p of pieces) {
    if (p instanceof Uint8Array) total += p.byteLength;
    else if (p instanceof Blob) total += p.size;
    else known = false;
  }
  const length = known ? total : undefined;
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    length,
    stream(onBytes) {
      let sent = 0;
      const queue = [...pieces];
      let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          for (;;) {
            if (reader) {
              const { done, value } = await reader.read();
              if (!done) {
                sent += value.byteLength;
                onBytes(sent);
                controller.enqueue(value);
                return;
              }
              reader = undefined;
            }
            const next = queue.shift();
            if (next === undefined) {
              controller.close();
              return;
            }
            if (next instanceof Uint8Array) {
              sent += next.byteLength;
              onBytes(sent);
              controller.enqueue(next);
              return;
            }
            const stream = next instanceof Blob ? next.stream() : next;
            reader = stream.getReader() as ReadableStreamDefaultReader<Uint8Array>;
          }
        },
        async cancel(reason) {
          await reader?.cancel(reason);
        },
      });
    },
  };
}

/** Quotes and line breaks cannot end a header value early (RFC 7578 §4.2 percent-encodes them). */
function quote(text: string): string {
  return text.replace(/[\r\n"%]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}
