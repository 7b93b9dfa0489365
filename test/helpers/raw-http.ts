import { readdir, readlink } from "node:fs/promises";
import net from "node:net";

/** What a raw request got back: the status (0 when nothing came) and whether the server closed. */
export interface RawAnswer {
  status: number;
  text: string;
  closedByServer: boolean;
}

/**
 * Sends `head` and `body` over a plain socket, exactly as given (a test of a server's handling
 * of bad HTTP needs bytes no HTTP client would send), and resolves once the server has answered
 * and closed, or gone quiet for `quietMs` after an answer, or `timeoutMs` passed.
 */
export function rawRequest(
  url: string,
  head: string,
  body: Buffer | string = "",
  options: {
    timeoutMs?: number;
    endAfterSend?: boolean;
    destroyAfterSend?: boolean;
    headOnly?: boolean;
  } = {},
): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    let received = "";
    let closedByServer = false;
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(head);
      socket.write(body, () => {
        if (options.destroyAfterSend) socket.destroy();
        else if (options.endAfterSend) socket.end();
      });
    });
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(received)?.[1];
      resolve({ status: status ? Number(status) : 0, text: received, closedByServer });
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 10_000);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      // One complete answer is all a test needs; keep-alive would otherwise hold the socket.
      const split = received.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(received)?.[1];
      const bodyLength = options.headOnly ? 0 : Number(length);
      if (split >= 0 && length !== undefined && received.length >= split + 4 + bodyLength) finish();
    });
    socket.on("end", () => {
      closedByServer = true;
    });
    socket.on("close", finish);
    socket.on("error", () => undefined);
  });
}

/** The head of a multipart POST with the given body length. */
export function multipartHead(path: string, boundary: string, length: number): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`
  );
}

/** One file part of a multipart body, without the closing boundary. */
export function filePart(boundary: string, field: string, filename: string, content: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    ),
    content,
    Buffer.from("\r\n"),
  ]);
}

/** The files a process holds open that are not sockets, pipes or other kernel objects. */
export async function openFiles(pid: number): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")));
  return targets.filter((t) => t.startsWith("/")).sort();
}

/** How many descriptors a process holds, of any kind. */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}
