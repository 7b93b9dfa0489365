import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import type { Task, TaskPage, TaskStatus } from "../../../src/client/index.js";
import { between, dateTime, duration, shortId } from "../format.js";
import { t } from "../i18n/index.js";
import { href } from "../route.js";
import { useConnection, useStream, useTick } from "../use-connection.js";
import { Progress, StatusBadge } from "./status-badge.js";

const PAGE = 20;
const STATUSES = ["pending", "processing", "completed", "failed", "cancelled"] as const;
type Filter = (typeof STATUSES)[number] | "";

export function QueueView() {
  const connection = useConnection();
  const [filter, setFilter] = useState<Filter>("");
  // Where each page after the first starts (the API's `before` cursor): a page is read from the
  // index wherever it is, so the hundredth page of a million tasks is as quick as the first.
  const [cursors, setCursors] = useState<number[]>([]);
  const before = cursors.at(-1);
  const offset = cursors.length * PAGE;
  const [page, setPage] = useState<TaskPage | undefined>();
  const [error, setError] = useState<string | undefined>();
  const reloadTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const load = useCallback(async () => {
    try {
      const query = {
        limit: PAGE,
        ...(before === undefined ? {} : { before }),
        ...(filter ? { status: filter as TaskStatus } : {}),
      };
      setPage(await connection.client.listTasks(query));
      setError(undefined);
    } catch (err) {
      setError(connection.explain(err));
    }
  }, [connection, filter, before]);

  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => () => clearTimeout(reloadTimer.current), []);

  // A burst of changes (a fleet finishing many tasks) reloads the page once.
  const reloadSoon = () => {
    clearTimeout(reloadTimer.current);
    reloadTimer.current = setTimeout(() => void load(), 250);
  };

  useStream((message) => {
    if (message.type === "reset") return reloadSoon();
    if (!("task" in message) || !page) return;
    const changed = message.task;
    const shown = page.tasks.some((task) => task.task_id === changed.task_id);
    const fits = filter === "" || (changed.status as string) === filter;
    if (shown && fits) {
      setPage({
        ...page,
        tasks: page.tasks.map((task) => (task.task_id === changed.task_id ? changed : task)),
      });
    } else if (shown || (fits && offset === 0)) {
      reloadSoon();
    }
  });

  const now = useTick(
    page?.tasks.some((task) => task.status === "pending" || task.status === "processing") ?? false,
  );

  return (
    <section>
      <div class="toolbar">
        <h1>{t("queue.title")}</h1>
        <label>
          {t("queue.filter")}{" "}
          <select
            name="status"
            value={filter}
            onChange={(e) => {
              setFilter(e.currentTarget.value as Filter);
              setCursors([]);
            }}
          >
            <option value="">{t("status.all")}</option>
            {STATUSES.map((s) => (
              <option value={s}>{t(`status.${s}`)}</option>
            ))}
          </select>
        </label>
      </div>
      {error && <p class="error">{error}</p>}
      {page && page.tasks.length === 0 && <p class="muted">{t("queue.empty")}</p>}
      {page && page.tasks.length > 0 && (
        <table class="tasks">
          <thead>
            <tr>
              <th>{t("queue.col.task")}</th>
              <th>{t("queue.col.status")}</th>
              <th>{t("queue.col.machine")}</th>
              <th>{t("queue.col.progress")}</th>
              <th>{t("queue.col.waiting")}</th>
              <th>{t("queue.col.running")}</th>
            </tr>
          </thead>
          <tbody>
            {page.tasks.map((task) => (
              <TaskRow task={task} now={now} />
            ))}
          </tbody>
        </table>
      )}
      {page && page.total > PAGE && (
        <div class="pager">
          <button
            type="button"
            disabled={cursors.length === 0}
            onClick={() => setCursors(cursors.slice(0, -1))}
          >
            {t("queue.prev")}
          </button>
          <span>
            {t("queue.page", {
              from: offset + 1,
              to: Math.min(offset + PAGE, page.total),
              total: page.total,
            })}
          </span>
          <button
            type="button"
            disabled={page.next_before === null}
            onClick={() => page.next_before !== null && setCursors([...cursors, page.next_before])}
          >
            {t("queue.next")}
          </button>
        </div>
      )}
    </section>
  );
}

function TaskRow({ task, now }: { task: Task; now: number }) {
  const active = task.status === "pending" || task.status === "processing";
  const waited = between(
    task.created_at,
    task.started_at ?? (task.status === "pending" ? now : task.completed_at),
  );
  const ran = task.started_at === null ? undefined : between(task.started_at, task.completed_at ?? now);
  return (
    <tr data-task={task.task_id} data-status={task.status}>
      <td data-label={t("queue.col.task")}>
        <a href={href({ view: "task", id: task.task_id })}>
          {task.description || <span class="muted">{t("queue.noDescription")}</span>}
        </a>
        <div class="muted small" title={dateTime(task.created_at)}>
          {shortId(task.task_id)}
        </div>
      </td>
      <td data-label={t("queue.col.status")}>
        <StatusBadge status={task.status} />
        {!active && task.started_at !== null && (
          <div class="muted small">
            {t("queue.col.duration")}: {duration(between(task.created_at, task.completed_at) ?? 0)}
          </div>
        )}
      </td>
      <td data-label={t("queue.col.machine")}>{task.machine ?? "—"}</td>
      <td data-label={t("queue.col.progress")}>
        <Progress value={task.progress} />
      </td>
      <td data-label={t("queue.col.waiting")}>{waited === undefined ? "—" : duration(waited)}</td>
      <td data-label={t("queue.col.running")}>{ran === undefined ? "—" : duration(ran)}</td>
    </tr>
  );
}
