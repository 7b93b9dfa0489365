/**
 * The typed client, end to end: upload, follow, save. Run it from a clone (after `npm install`):
 *
 *   npx tsx examples/client.ts speech.wav person.mp4 out.mp4
 *
 * MULTI_HEYGEM_URL points it at another gateway (default http://127.0.0.1:8101) and
 * MULTI_HEYGEM_API_KEY gives it a key. In your own project: `npm install multi-heygem`, then the
 * same import.
 */
import { ApiError, Client } from "multi-heygem/client";

const [audio, video, out = "out.mp4"] = process.argv.slice(2);
if (!audio || !video) {
  process.stderr.write("usage: npx tsx examples/client.ts AUDIO VIDEO [OUT.mp4]\n");
  process.exit(2);
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const fail = (line: string) => process.stderr.write(`${line}\n`);

const client = new Client({
  ...(process.env.MULTI_HEYGEM_URL ? { url: process.env.MULTI_HEYGEM_URL } : {}),
  ...(process.env.MULTI_HEYGEM_API_KEY ? { apiKey: process.env.MULTI_HEYGEM_API_KEY } : {}),
});

try {
  const task = await client.createTask(
    { audio, video, description: "examples/client.ts" },
    { onUpload: (sent, total) => total && say(`uploaded ${Math.round((100 * sent) / total)} %`) },
  );
  say(`task ${task.task_id} created`);
  const done = await client.waitFor(task.task_id, {
    onUpdate: (t) => say(`${t.status}${t.machine ? ` on ${t.machine}` : ""} ${t.progress} %`),
  });
  if (done.status !== "completed") {
    fail(`task ${done.task_id} ${done.status}: ${done.error_message ?? ""}`);
    process.exit(1);
  }
  const bytes = await client.saveResult(done.task_id, out);
  say(`saved ${out} (${bytes} bytes)`);
} catch (err) {
  if (!(err instanceof ApiError)) throw err;
  fail(`${err.code}: ${err.message}`);
  process.exit(err.status >= 400 && err.status < 500 ? 2 : 1);
}
