import type { Command } from "commander";
import { type ConnectionFlags, connect, EXIT, runCommand, withConnection } from "./connection.js";
import type { Messages } from "./messages.js";
import { table } from "./table.js";

interface ListFlags extends ConnectionFlags {
  json?: boolean;
}

/** `machines` (the table), `machines drain|resume NAME`. */
export function registerMachines(program: Command, m: Messages): void {
  const machines = program.command("machines").description(m.t("help.machines"));
  withConnection(machines.command("list", { isDefault: true }).description(m.t("help.machines.list")), m)
    .option("--json", m.t("opt.json"))
    .action((flags: ListFlags) => runCommand(() => list(flags, m)));

  for (const verb of ["drain", "resume"] as const) {
    withConnection(
      machines
        .command(verb)
        .description(m.t(`help.machines.${verb}`))
        .argument("<name>", m.t("arg.name")),
      m,
    ).action((name: string, flags: ConnectionFlags) =>
      runCommand(async () => {
        const machine = await connect(flags, m)[verb](name);
        process.stderr.write(`${m.t(`done.${verb}`, { name, state: m.word("state", machine.state) })}\n`);
        return EXIT.ok;
      }),
    );
  }
}

async function list(flags: ListFlags, m: Messages): Promise<number> {
  const machines = await connect(flags, m).machines();
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(machines, null, 2)}\n`);
    return EXIT.ok;
  }
  if (machines.length === 0) {
    process.stderr.write(`${m.t("machines.none")}\n`);
    return EXIT.ok;
  }
  const header = [
    "col.name",
    "col.state",
    "col.running",
    "col.speed",
    "col.doneFailed",
    "col.lastError",
  ] as const;
  process.stdout.write(
    table(
      header.map((k) => m.t(k)),
      machines.map((machine) => [
        machine.name,
        m.word("state", machine.state),
        `${machine.running}/${machine.capacity}`,
        machine.speed === null ? "-" : `${machine.speed.toFixed(2)}`,
        `${machine.tasks_done}/${machine.tasks_failed}`,
        machine.last_error ?? "",
      ]),
    ),
  );
  return EXIT.ok;
}
