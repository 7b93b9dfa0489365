import type { Logger } from "../logger.js";
import { CommandEngine, type CommandEngineSettings } from "./command-engine.js";
import type { Engine } from "./engine.js";
import { FfmpegEngine } from "./ffmpeg-engine.js";
import { createHeygemEngine } from "./heygem/heygem-engine.js";
import type { HeygemSettings } from "./heygem/heygem-settings.js";
import { SimulateEngine, type SimulateEngineSettings } from "./simulate-engine.js";

/**
 * The settings of the engines that have some, as the worker's configuration carries them
 * (config/worker-config.ts): declared here, by the engines that own them, so config/ may check them
 * with the engines' own parsers while no engine imports config/.
 */
export interface EngineSettings {
  readonly command?: CommandEngineSettings | undefined;
  readonly simulate?: SimulateEngineSettings | undefined;
  readonly heygem?: HeygemSettings | undefined;
}

/** What the worker knows when it builds its engine; each engine takes the parts it needs. */
export interface EngineFactoryOptions {
  /** The machine's `max_concurrent`: how many jobs the engine should accept at once. */
  readonly maxConcurrent?: number | undefined;
  readonly logger?: Logger | undefined;
  /** The worker's configuration, for engines with settings of their own (absent when embedded). */
  readonly config?: EngineSettings | undefined;
}

export type EngineFactory = (options: EngineFactoryOptions) => Engine;

/** Adding an engine: its file in this folder, plus one line here. */
export const engineFactories = {
  ffmpeg: (options) => new FfmpegEngine({ capacity: options.maxConcurrent, logger: options.logger }),
  heygem: (options) => createHeygemEngine(options.config?.heygem, options.logger),
  command: (options) => new CommandEngine(options.config?.command, options),
  simulate: (options) => new SimulateEngine(options.config?.simulate, options),
} as const satisfies Record<string, EngineFactory>;

export type EngineName = keyof typeof engineFactories;

export function engineNames(): EngineName[] {
  return Object.keys(engineFactories) as EngineName[];
}

export function isEngineName(name: string): name is EngineName {
  return Object.hasOwn(engineFactories, name);
}

export function createEngine(name: string, options: EngineFactoryOptions = {}): Engine {
  if (!isEngineName(name)) {
    throw new RangeError(`unknown engine "${name}"; known engines: ${engineNames().join(", ")}`);
  }
  return engineFactories[name](options);
}
