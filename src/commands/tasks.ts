import { type Command, Option } from "commander";
import type { TaskStatus } from "../client/client.js";
import { type ConnectionFlags, connect, EXIT, runCommand, UsageError, withConnection } from "./connection.js";
import type { Messages } from "./messages.js";
import { table } from "./table.js";
import { localTime } from "./units.js";

const STATUSES = [
  "pending",
  "processing",
  "completed",
  "failed",
  "cancelled",
] as const satisfies readonly TaskStatus[];

interface ListFlags extends ConnectionFlags {
  status?: TaskStatus;
  limit?: string;
  json?: boolean;
}

interface ShowFlags extends ConnectionFlags {
  json?: boolean;
}

/** `tasks` (the list), `tasks show|cancel|retry|delete ID`. */
export function registerTasks(program: Command, m: Messages): void {
  const tasks = program.command("tasks").description(m.t("help.tasks"));
  // The list is a subcommand too (the default one), so that `--url` after `show` belongs to `show`.
  withConnection(tasks.command("list", { isDefault: true }).description(m.t("help.tasks.list")), m)
    .addOption(new Option("--status <status>", m.t("opt.status")).choices(STATUSES))
    .option("--limit <n>", m.t("opt.limit"), "50")
    .option("--json", m.t("opt.json"))
    .action((flags: ListFlags) => runCommand(() => list(flags, m)));

  withConnection(tasks.command("show").description(m.t("help.tasks.show")).argument("<id>", m.t("arg.id")), m)
    .option("--json", m.t("opt.json"))
    .action((id: string, flags: ShowFlags) => runCommand(() => show(id, flags, m)));

  for (const verb of ["cancel", "retry"] as const) {
    withConnection(
      tasks
        .command(verb)
        .description(m.t(`help.tasks.${verb}`))
        .argument("<id>", m.t("arg.id")),
      m,
    ).action((id: string, flags: ConnectionFlags) =>
      runCommand(async () => {
        const task = await connect(flags, m)[verb](id);
        process.stderr.write(`${m.t(`done.${verb}`, { id, status: m.word("status", task.status) })}\n`);
        return EXIT.ok;
      }),
    );
  }

  withConnection(
    tasks.command("delete").description(m.t("help.tasks.delete")).argument("<id>", m.t("arg.id")),
    m,
  ).action((id: string, flags: ConnectionFlags) =>
    runCommand(async () => {
      await connect(flags, m).delete(id);
      process.stderr.write(`${m.t("done.delete", { id })}\n`);
      return EXIT.ok;
    }),
  );
}

async function list(flags: ListFlags, m: Messages): Promise<number> {
  const limit = Number(flags.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw new UsageError(m.t("usage.badLimit", { value: flags.limit ?? "" }));
  }
  const client = connect(flags, m);
  const page = await client.listTasks({ limit, ...(flags.status ? { status: flags.status } : {}) });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return EXIT.ok;
  }
  if (page.tasks.length === 0) {
    process.stderr.write(`${m.t("tasks.none")}\n`);
    return EXIT.ok;
  }
  const header = [
    "col.id",
    "col.status",
    "col.machine",
    "col.progress",
    "col.created",
    "col.description",
  ] as const;
  process.stdout.write(
    table(
      header.map((k) => m.t(k)),
      page.tasks.map((t) => [
        t.task_id,
        m.word("status", t.status),
        t.machine ?? "-",
        `${t.progress}%`,
        localTime(t.created_at),
        t.description ?? "",
      ]),
    ),
  );
  process.stderr.write(`${m.t("tasks.total", { shown: page.tasks.length, total: page.total })}\n`);
  return EXIT.ok;
}

async function show(id: string, flags: ShowFlags, m: Messages): Promise<number> {
  const client = connect(flags, m);
  const [task, events] = await Promise.all([client.getTask(id), client.events(id)]);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ task, events }, null, 2)}\n`);
    return EXIT.ok;
  }
  const fields: [string, string][] = [
    [m.t("field.id"), task.task_id],
    [m.t("field.status"), m.word("status", task.status)],
    [m.t("field.machine"), task.machine ?? "-"],
    [m.t("field.progress"), `${task.progress}%`],
    [m.t("field.description"), task.description ?? "-"],
    [m.t("field.created"), localTime(task.created_at)],
    [m.t("field.started"), localTime(task.started_at)],
    [m.t("field.completed"), localTime(task.completed_at)],
    [m.t("field.attempts"), String(task.attempts)],
    [m.t("field.audio"), m.t("seconds", { n: task.audio_duration.toFixed(1) })],
    [m.t("field.priority"), String(task.priority)],
    [m.t("field.owner"), task.owner ?? "-"],
    [m.t("field.callback"), task.callback_url ?? "-"],
    [m.t("field.result"), task.result_url],
  ];
  if (task.error_message)
    fields.push([m.t("field.error"), `${task.error_message} (${task.error_kind ?? "-"})`]);
  const timeline = events.map((e) => [
    localTime(e.at),
    e.type,
    e.to_status ? m.word("status", e.to_status) : "",
    e.machine ?? "",
    e.progress === null ? "" : `${e.progress}%`,
    e.message ?? "",
  ]);
  const header = ["col.at", "col.event", "col.status", "col.machine", "col.progress", "col.message"] as const;
  process.stdout.write(
    `${table(null, fields)}\n${m.t("field.events")}\n${table(
      header.map((k) => m.t(k)),
      timeline,
    )}`,
  );
  return EXIT.ok;
}
