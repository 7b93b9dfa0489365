import { join } from "node:path";
import { beforeAll } from "vitest";
import { removeDir, taskForm, tempDir } from "./gateway.js";
import { makeAudio, makeVideo } from "./media.js";

export interface TaskInputs {
  audio: string;
  video: string;
}

/** A short audio file and a short video in `dir`: a task the embedded ffmpeg worker finishes quickly. */
export async function makeTaskInputs(dir: string): Promise<TaskInputs> {
  const inputs = { audio: join(dir, "speech.m4a"), video: join(dir, "person.mp4") };
  await makeAudio(inputs.audio, { seconds: 1 });
  await makeVideo(inputs.video, { seconds: 1 });
  return inputs;
}

/**
 * The test file's inputs, made once before its tests and removed after them; their paths are
 * there once the tests run (empty while the file is collected).
 */
export function taskInputsOfThisFile(): TaskInputs {
  const inputs: TaskInputs = { audio: "", video: "" };
  beforeAll(async () => {
    const dir = await tempDir();
    Object.assign(inputs, await makeTaskInputs(dir));
    return () => removeDir(dir);
  });
  return inputs;
}

/** POST /tasks with the inputs and any text fields, as a client would. */
export async function submitTask(
  gatewayUrl: string,
  inputs: TaskInputs,
  fields: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${gatewayUrl}/tasks`, {
    method: "POST",
    body: await taskForm({ audio: { path: inputs.audio }, video: { path: inputs.video }, ...fields }),
  });
}
