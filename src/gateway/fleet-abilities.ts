import { InputError } from "../errors.js";
import { needMet, type TaskNeed } from "../store/task-speech.js";
import type { Fleet } from "./fleet.js";

/**
 * What the fleet as a whole can do for a task that needs `need` (issue 12: text tasks go only to
 * machines that speak, voice tasks only to those that clone), as the API and the task's events say it.
 */

/** Why a pending task waits, beyond a busy slot; `key` stays the same for as long as the reason does. */
export interface WaitingReason {
  readonly key: "no_machine_up" | "cannot_speak" | "cannot_clone";
  readonly message: string;
}

/**
 * The reason tasks that need `need` cannot start now, or undefined when some up machine could take
 * them: no machine up at all, or none of those up can speak (or clone).
 */
export function waitingReason(fleet: Fleet, need: TaskNeed): WaitingReason | undefined {
  const { up, total } = fleet.availability();
  if (up === 0) return { key: "no_machine_up", message: `waiting: 0 of ${total} machines up` };
  if (need === "lipsync") return undefined;
  const able = fleet.list().some((m) => m.placeable && m.can !== undefined && needMet(need, m.can));
  if (able) return undefined;
  const machines = `${up} machine${up === 1 ? "" : "s"} up`;
  return need === "tts"
    ? { key: "cannot_speak", message: `waiting: none of the ${machines} can speak text (capabilities.tts)` }
    : {
        key: "cannot_clone",
        message: `waiting: none of the ${machines} can clone a voice (capabilities.voice_clone)`,
      };
}

/**
 * Refuses at submit a task no machine of the fleet can ever take as it stands: every machine has
 * answered and none can do `need` (the embedded worker alone and a voice_id: its offline voice does
 * not clone). Machines not heard from yet, or a fleet with none listed, leave the task to wait.
 */
export function refuseUnservable(fleet: Fleet, need: TaskNeed): void {
  if (need === "lipsync") return;
  const machines = fleet.list().filter((m) => !m.removed);
  if (machines.length === 0) return;
  if (machines.some((m) => m.can === undefined || needMet(need, m.can))) return;
  // A voice where nothing speaks at all: the first thing to fix is a machine that speaks.
  if (!machines.some((m) => m.can !== undefined && needMet("tts", m.can))) {
    throw new InputError(
      "NO_TTS_MACHINE",
      "no machine of this gateway can speak text (capabilities.tts): send an audio file instead, or add a " +
        "worker that speaks (an ffmpeg worker, or one with --tts)",
      "text",
    );
  }
  throw new InputError(
    "NO_VOICE_CLONE_MACHINE",
    "no machine of this gateway can clone a voice (capabilities.voice_clone; the embedded worker's offline " +
      "voice cannot): leave voice_id out to speak in the machine's own voice, or add a worker with --tts " +
      "(HeyGem's fish-speech)",
    "voice_id",
  );
}
