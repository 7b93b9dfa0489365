import { useCallback, useEffect, useState } from "preact/hooks";
import {
  ApiError,
  type CallbackDeliveries,
  type Task,
  type TaskEventRow,
} from "../../../src/client/index.js";
import { between, bytes, dateTime, duration } from "../format.js";
import { t } from "../i18n/index.js";
import { href } from "../route.js";
import { useConnection, useStream } from "../use-connection.js";
import { attemptsOf } from "./attempts.js";
import { Progress, StatusBadge } from "./status-badge.js";

export function TaskView({ id }: { id: string }) {
  const connection = useConnection();
  const [task, setTask] = useState<Task | undefined>();
  const [events, setEvents] = useState<TaskEventRow[]>([]);
  const [callbacks, setCallbacks] = useState<CallbackDeliveries | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [gone, setGone] = useState<"missing" | "deleted" | undefined>();
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const [next, log, deliveries] = await Promise.all([
        connection.client.getTask(id),
        connection.client.events(id),
        connection.client.callbacks(id),
      ]);
      setTask(next);
      setEvents(log);
      setCallbacks(deliveries);
      setError(undefined);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) setGone("missing");
      else setError(connection.explain(err));
    }
  }, [connection, id]);

  useEffect(() => {
    void load();
  }, [load]);

  useStream((message) => {
    if (message.type === "reset") return void load();
    if (!("task" in message) || message.task.task_id !== id) return;
    setTask(message.task);
    if (message.type === "task") {
      const event = message.event;
      setEvents((log) => (log.some((e) => e.id === event.id) ? log : [...log, event]));
      // Each status change may have queued a callback delivery.
      connection.client.callbacks(id).then(setCallbacks, () => {});
    }
  });

  const act = async (action: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await action();
      setError(undefined);
    } catch (err) {
      setError(connection.explain(err));
    } finally {
      setBusy(false);
    }
  };

  if (gone)
    return (
      <section>
        <p class="muted" data-gone={gone}>
          {gone === "deleted" ? t("task.deleted") : t("task.notFound")}
        </p>
        <a href={href({ view: "queue" })}>{t("task.back")}</a>
      </section>
    );
  if (!task) return <section>{error && <p class="error">{error}</p>}</section>;

  const status = task.status as string;
  const active = status === "pending" || status === "processing";
  const attempts = attemptsOf(events);
  return (
    <section class="task" data-task={task.task_id} data-status={task.status}>
      <div class="toolbar">
        <h1>
          {t("task.title")} <code>{task.task_id}</code>
        </h1>
        <div class="actions">
          {active && (
            <button
              type="button"
              data-action="cancel"
              disabled={busy}
              onClick={() => act(() => connection.client.cancel(id).then(setTask))}
            >
              {t("task.cancel")}
            </button>
          )}
          {(status === "failed" || status === "cancelled") && (
            <button
              type="button"
              data-action="retry"
              disabled={busy}
              onClick={() => act(() => connection.client.retry(id).then(setTask))}
            >
              {t("task.retry")}
            </button>
          )}
          {!active && (
            <button
              type="button"
              class="danger"
              data-action="delete"
              disabled={busy}
              onClick={() =>
                confirm(t("task.confirmDelete")) &&
                act(() => connection.client.delete(id).then(() => setGone("deleted")))
              }
            >
              {t("task.delete")}
            </button>
          )}
        </div>
      </div>
      {error && <p class="error">{error}</p>}
      <p>
        <StatusBadge status={task.status} /> <Progress value={task.progress} /> {task.description}
      </p>
      {task.error_message && (
        <p class="error">
          {t("task.error")}: {task.error_message}
        </p>
      )}

      {task.status === "completed" && <ResultVideo id={id} />}

      <h2>{t("task.facts")}</h2>
      <dl class="facts">
        {task.speech && (
          <>
            <dt>{t("task.text")}</dt>
            <dd data-fact="speech">
              {task.speech.text} ({task.speech.lang}
              {task.speech.voice_id && `, ${t("task.voice")} ${task.speech.voice_id}`})
            </dd>
          </>
        )}
        <dt>{t("task.audio")}</dt>
        <dd data-fact="audio_duration">
          {task.speech && !task.speech.spoken
            ? t("task.notSpoken", { seconds: task.audio_duration.toFixed(1) })
            : `${task.audio_duration.toFixed(2)} s · ${task.audio_name} · ${bytes(task.audio_bytes)}`}
        </dd>
        <dt>{t("task.video")}</dt>
        <dd data-fact="video">
          {task.video_name} · {bytes(task.video_bytes)}
          {task.avatar_id && ` (${t("task.avatar")} ${task.avatar_id})`}
        </dd>
        <dt>{t("task.created")}</dt>
        <dd>{dateTime(task.created_at)}</dd>
        <dt>{t("task.started")}</dt>
        <dd>{dateTime(task.started_at)}</dd>
        <dt>{t("task.finished")}</dt>
        <dd>
          {dateTime(task.completed_at)}
          {task.completed_at && ` (${duration(between(task.created_at, task.completed_at) ?? 0)})`}
        </dd>
        <dt>{t("task.priority")}</dt>
        <dd>{task.priority}</dd>
        <dt>{t("task.attempts")}</dt>
        <dd>{task.attempts}</dd>
        {task.owner && (
          <>
            <dt>{t("task.owner")}</dt>
            <dd>{task.owner}</dd>
          </>
        )}
        {task.callback_url && (
          <>
            <dt>{t("task.callbackUrl")}</dt>
            <dd>
              <code>{task.callback_url}</code>
            </dd>
          </>
        )}
      </dl>

      <h2>{t("task.attemptsPerMachine")}</h2>
      {attempts.length === 0 ? (
        <p class="muted">{t("task.attempt.none")}</p>
      ) : (
        <table class="attempts">
          <thead>
            <tr>
              <th>{t("task.attempt.col.machine")}</th>
              <th>{t("task.attempt.col.attempt")}</th>
              <th>{t("task.attempt.col.started")}</th>
              <th>{t("task.attempt.col.outcome")}</th>
            </tr>
          </thead>
          <tbody>
            {attempts.map((a) => (
              <tr data-attempt={a.attemptId}>
                <td data-label={t("task.attempt.col.machine")}>{a.machine ?? "—"}</td>
                <td data-label={t("task.attempt.col.attempt")}>
                  <code>{a.attemptId.slice(0, 8)}</code>
                </td>
                <td data-label={t("task.attempt.col.started")}>{dateTime(a.dispatchedAt)}</td>
                <td data-label={t("task.attempt.col.outcome")}>
                  {a.end
                    ? `${a.end.type}${a.end.message ? `: ${a.end.message}` : ""}`
                    : t("task.attempt.running")}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>{t("task.timeline")}</h2>
      <ol class="timeline">
        {events.map((e) => (
          <li data-event={e.type}>
            <time>{dateTime(e.at)}</time> <strong>{e.type}</strong>
            {e.machine && <span class="muted"> @ {e.machine}</span>}
            {e.progress !== null && e.type === "progress" && <span> {e.progress}%</span>}
            {e.message && <div class="muted small">{e.message}</div>}
          </li>
        ))}
      </ol>

      <h2>{t("task.callbacks")}</h2>
      {!callbacks || callbacks.deliveries.length === 0 ? (
        <p class="muted">{t("task.callbacks.none")}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>{t("task.callbacks.col.event")}</th>
              <th>{t("task.callbacks.col.state")}</th>
              <th>{t("task.callbacks.col.tries")}</th>
              <th>{t("task.callbacks.col.last")}</th>
            </tr>
          </thead>
          <tbody>
            {callbacks.deliveries.map((d) => {
              const last = d.tries[d.tries.length - 1];
              return (
                <tr>
                  <td data-label={t("task.callbacks.col.event")}>{d.event ?? "—"}</td>
                  <td data-label={t("task.callbacks.col.state")}>{d.state}</td>
                  <td data-label={t("task.callbacks.col.tries")}>{d.tries.length}</td>
                  <td data-label={t("task.callbacks.col.last")}>
                    {last ? (last.http_status ?? last.error ?? "—") : "—"}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <p>
        <a href={href({ view: "queue" })}>{t("task.back")}</a>
      </p>
    </section>
  );
}

function ResultVideo({ id }: { id: string }) {
  const connection = useConnection();
  const [source, setSource] = useState<string | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    const controller = new AbortController();
    let revoke = () => {};
    connection.resultSource(id, controller.signal).then(
      (result) => {
        revoke = result.revoke;
        if (controller.signal.aborted) revoke();
        else setSource(result.url);
      },
      (err: unknown) => {
        if (!controller.signal.aborted) setError(connection.explain(err));
      },
    );
    return () => {
      controller.abort();
      revoke();
    };
  }, [connection, id]);
  return (
    <div class="result">
      <h2>{t("task.result")}</h2>
      {error && <p class="error">{error}</p>}
      {source ? (
        <>
          {/* biome-ignore lint/a11y/useMediaCaption: a synthesised clip has no caption track to offer */}
          <video src={source} controls preload="metadata" playsInline data-result={id} />
          <p>
            <a href={source} download={`${id}.mp4`}>
              {t("task.download")}
            </a>
          </p>
        </>
      ) : (
        !error && <p class="muted">{t("task.resultLoading")}</p>
      )}
    </div>
  );
}
