import type { FastifyBaseLogger } from "fastify";
import { ERROR_CODES } from "../error-codes.js";
import { AppError, errorMessage, InputError, RetryLaterError } from "../errors.js";
import type { PreparedVoiceView } from "../protocol/schemas.js";
import { isWorkerError, WorkerHttpError, WorkerUnreachableError } from "../protocol/worker-client.js";
import type { Fleet, Machine } from "./fleet.js";

/** The request's logger: every step of a voice is a line of the request that made it. */
type Log = FastifyBaseLogger;

/** A new voice's reference recording: staged on the gateway's disk, not yet in its blob store. */
export interface VoiceReference {
  readonly sha256: string;
  readonly bytes: number;
  /** Its file name, whose extension tells the machine the format. */
  readonly name: string;
  /** Where to read it from to send it to a machine. */
  readonly path: string;
}

export interface NewVoice {
  readonly id: string;
  readonly lang: string;
  readonly reference: VoiceReference;
  /** The form field a refusal of the recording names (`audio`, or `avatar_id`). */
  readonly field: string;
}

export interface MadeVoice {
  readonly machine: string;
  readonly referenceText: string;
  /** false: the machine had the same recording prepared already (another voice of it). */
  readonly prepared: boolean;
}

/** What a client is told to wait when no machine could prepare a voice: a container restarts in seconds. */
export const VOICE_RETRY_AFTER_S = 30;

/**
 * Makes a new voice on the fleet (issue 12, "Voices"): prepares it on one up machine that can clone
 * (`capabilities.voice_clone`), the least busy first, sending the recording when the machine asks
 * for it (BLOB_MISSING), as the dispatcher sends a task's inputs. A machine's failure moves on to
 * the next; the recording's own fault ends it at once (400), since every machine would say the
 * same. No machine that could ever clone is a 422; clones that are down or failing, a 503 with
 * Retry-After. Text tasks prepare the voice again wherever it is missing; this first preparation
 * is what tells the client, before it stores anything, that the recording makes a voice.
 */
export class VoiceMaker {
  constructor(private readonly o: { readonly fleet: Fleet }) {}

  async make(voice: NewVoice, signal: AbortSignal, log: Log): Promise<MadeVoice> {
    const machines = await this.cloners(log);
    const failures: string[] = [];
    for (const machine of machines) {
      const mlog = log.child({ machine: machine.name });
      try {
        const view = await this.prepareOn(machine, voice, signal, mlog);
        machine.knowBlob(voice.reference.sha256);
        mlog.info({ prepared: view.prepared }, "voice: prepared on machine");
        return { machine: machine.name, referenceText: view.reference_text, prepared: view.prepared };
      } catch (err) {
        if (signal.aborted) throw err;
        if (err instanceof WorkerHttpError && err.kind === "input") {
          mlog.info({ reason: err.message }, "voice: the machine cannot use the recording");
          throw new InputError("VOICE_REFERENCE_UNUSABLE", err.message, voice.field);
        }
        if (err instanceof WorkerUnreachableError) this.o.fleet.reportUnreachable(machine, err.message);
        if (isWorkerError(err, ERROR_CODES.WORKER_DRAINING)) this.o.fleet.reportAgentDraining(machine);
        const code = (err as { code?: unknown }).code;
        failures.push(`${machine.name}: ${typeof code === "string" ? code : "failed"}`);
        mlog.warn({ reason: errorMessage(err) }, "voice: machine could not prepare it; trying the next");
      }
    }
    throw new RetryLaterError(
      "VOICE_SERVICE_UNAVAILABLE",
      `no machine could prepare the voice now (${failures.join(", ")}): the voice services are down ` +
        `or busy; nothing was stored, send it again in ${VOICE_RETRY_AFTER_S} s`,
      VOICE_RETRY_AFTER_S,
    );
  }

  /**
   * Up machines that can clone, least busy first (by name among equals). A machine not heard from
   * since the start may well clone: it is asked now, rather than the client refused for it.
   */
  private async cloners(log: Log): Promise<Machine[]> {
    const { fleet } = this.o;
    const listed = () => fleet.list().filter((m) => !m.removed);
    const unheard = listed().filter((m) => m.capabilities === undefined && m.spec.enabled);
    if (unheard.length > 0 && !listed().some((m) => m.placeable && m.capabilities?.voice_clone))
      await Promise.all(unheard.map((m) => fleet.refresh(m)));
    const machines = listed();
    const cloners = machines.filter((m) => m.capabilities?.voice_clone === true);
    const up = cloners.filter((m) => m.placeable).sort(byLoad);
    log.info(
      { cloners: cloners.map((m) => `${m.name} (${m.state})`), trying: up.map((m) => m.name) },
      "voice: machines that can clone",
    );
    if (up.length > 0) return up;
    if (cloners.length === 0 && !machines.some((m) => m.capabilities === undefined)) {
      throw new AppError(
        "VOICE_CLONE_UNAVAILABLE",
        machines.length === 0
          ? "this gateway has no machine, so none that can clone a voice"
          : "none of this gateway's machines can clone a voice: that takes a worker with HeyGem's fish-speech " +
              "container (--tts); the embedded worker and workers without it speak only in their own voice",
      );
    }
    throw new RetryLaterError(
      "VOICE_SERVICE_UNAVAILABLE",
      cloners.length === 0
        ? `no machine has said yet whether it can clone a voice; send it again in ${VOICE_RETRY_AFTER_S} s`
        : `no machine that can clone a voice is up now (${cloners.map((m) => `${m.name}: ${m.state}`).join(", ")}); ` +
            `send it again in ${VOICE_RETRY_AFTER_S} s`,
      VOICE_RETRY_AFTER_S,
    );
  }

  private async prepareOn(
    machine: Machine,
    voice: NewVoice,
    signal: AbortSignal,
    log: Log,
  ): Promise<PreparedVoiceView> {
    const { client } = machine;
    const { reference } = voice;
    const body = {
      reference: { sha256: reference.sha256, bytes: reference.bytes, name: reference.name },
      lang: voice.lang,
    };
    for (let tries = 0; ; tries++) {
      try {
        log.info("voice: preparing on machine");
        return await client.putVoice(voice.id, body, signal);
      } catch (err) {
        if (!isWorkerError(err, ERROR_CODES.BLOB_MISSING) || tries >= 1) throw err;
      }
      await machine.uploadOnce(reference.sha256, async () => {
        if (await client.hasBlob(reference.sha256, signal)) return;
        log.info({ sha256: reference.sha256, bytes: reference.bytes }, "voice: sending the recording");
        await client.putBlob(reference.sha256, reference.path, reference.bytes, signal);
      });
    }
  }
}

function byLoad(a: Machine, b: Machine): number {
  const load = (m: Machine) => m.busySlots / Math.max(1, m.capacity);
  return load(a) - load(b) || a.name.localeCompare(b.name);
}
