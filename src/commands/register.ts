import type { Command } from "commander";
import { registerMachines } from "./machines.js";
import { languageOf, Messages } from "./messages.js";
import { registerSubmit } from "./submit.js";
import { registerTasks } from "./tasks.js";

/**
 * The commands that drive a running gateway through the typed client (issue 11): `submit`,
 * `tasks`, `machines`. They speak the language of LANG/LC_ALL/LC_MESSAGES.
 */
export function registerClientCommands(program: Command, env: NodeJS.ProcessEnv = process.env): void {
  const m = new Messages(languageOf(env));
  registerSubmit(program, m);
  registerTasks(program, m);
  registerMachines(program, m);
}
