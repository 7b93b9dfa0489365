import Fastify from "fastify";

/**
 * The yardstick of the API benchmark: a bare Fastify app whose one route answers what the
 * gateway's GET /tasks/{id} answers (the JSON it is given as argv[2]), with nothing else —
 * no logger, no schemas, no store. Started as a child process exactly like the gateway.
 */
const body = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>;
const app = Fastify({ logger: false });
app.get<{ Params: { task_id: string } }>("/tasks/:task_id", async (request) => ({
  ...body,
  task_id: request.params.task_id,
}));
await app.listen({ host: "127.0.0.1", port: 0 });
const address = app.server.address();
const port = typeof address === "object" && address ? address.port : 0;
process.stdout.write(
  `${JSON.stringify({ msg: "bare fastify listening", url: `http://127.0.0.1:${port}` })}\n`,
);
process.once("SIGTERM", () => {
  void app.close().then(() => process.exit(0));
});
