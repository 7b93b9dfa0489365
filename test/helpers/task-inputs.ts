import { join } from "node:path";
import { taskForm } from "./gateway.js";
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
