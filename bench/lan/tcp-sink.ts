import { createServer } from "node:net";

/**
 * A child program for the raw-TCP baseline: `node tcp-sink.js HOST PORT` accepts connections,
 * counts what each sends until it half-closes, then answers the count on one line and closes.
 * It logs one JSON line when listening, in the form the bench harness waits for.
 */
const [host = "127.0.0.1", port = "0"] = process.argv.slice(2);

const server = createServer({ allowHalfOpen: true }, (socket) => {
  let bytes = 0;
  socket.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  socket.on("end", () => socket.end(`${bytes}\n`));
  socket.on("error", () => socket.destroy());
});
server.listen(Number(port), host, () => {
  const address = server.address();
  const at = typeof address === "object" && address ? address.port : port;
  process.stdout.write(`${JSON.stringify({ msg: "tcp sink listening", url: `tcp://${host}:${at}` })}\n`);
});
