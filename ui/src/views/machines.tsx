import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Machine } from "../../../src/client/index.js";
import { dateTime } from "../format.js";
import { t } from "../i18n/index.js";
import { useConnection, useStream } from "../use-connection.js";

/**
 * Machine health (up, down, version) is not in the task stream, so this view also reloads every
 * few seconds while it is shown; task changes reload it at once (running counts, done, failed).
 */
const REFRESH_MS = 5000;

export function MachinesView() {
  const connection = useConnection();
  const [machines, setMachines] = useState<Machine[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [forbidden, setForbidden] = useState(false);
  const [busy, setBusy] = useState<string | undefined>();
  const soon = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const load = useCallback(async () => {
    try {
      setMachines(await connection.client.machines());
      setError(undefined);
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) setForbidden(true);
      else setError(connection.explain(err));
    }
  }, [connection]);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => {
      clearInterval(timer);
      clearTimeout(soon.current);
    };
  }, [load]);

  useStream((message) => {
    if (message.type !== "task" && message.type !== "reset") return;
    clearTimeout(soon.current);
    soon.current = setTimeout(() => void load(), 250);
  });

  const toggle = async (machine: Machine) => {
    setBusy(machine.name);
    try {
      const next = machine.draining
        ? await connection.client.resume(machine.name)
        : await connection.client.drain(machine.name);
      setMachines((list) => list?.map((m) => (m.name === next.name ? next : m)));
      setError(undefined);
    } catch (err) {
      setError(connection.explain(err));
    } finally {
      setBusy(undefined);
    }
  };

  return (
    <section>
      <h1>{t("machines.title")}</h1>
      {forbidden && <p class="error">{t("machines.forbidden")}</p>}
      {error && <p class="error">{error}</p>}
      {machines && machines.length === 0 && <p class="muted">{t("machines.empty")}</p>}
      <div class="cards">
        {machines?.map((m) => (
          <article class="card" data-machine={m.name} data-state={m.state}>
            <header>
              <h2>{m.name}</h2>
              <span class={`badge state-${m.state}`}>{m.state}</span>
            </header>
            <dl class="facts">
              <dt>{t("machines.load")}</dt>
              <dd data-fact="load">
                {m.running} / {m.capacity}
                {m.held > 0 && ` (${t("machines.held", { n: m.held })})`}
              </dd>
              <dt>{t("machines.speed")}</dt>
              <dd>
                {m.speed === null
                  ? t("machines.speedUnknown")
                  : t("machines.speedUnit", { value: m.speed.toFixed(2) })}
              </dd>
              <dt>{t("machines.done")}</dt>
              <dd>
                {m.tasks_done} / {m.tasks_failed}
              </dd>
              <dt>{t("machines.engine")}</dt>
              <dd>
                {m.engine ?? "—"} {m.version ?? ""}
              </dd>
              <dt>{t("machines.lastSeen")}</dt>
              <dd>{dateTime(m.last_seen)}</dd>
              {m.last_error && (
                <>
                  <dt>{t("machines.lastError")}</dt>
                  <dd class="error">{m.last_error}</dd>
                </>
              )}
              {m.containers.length > 0 && (
                <>
                  <dt>{t("machines.containers")}</dt>
                  <dd data-fact="containers">
                    {m.containers.map((c) => (
                      <div class={c.reachable && c.healthy ? "" : "error"}>
                        {c.name}:{" "}
                        {!c.reachable
                          ? t("machines.containerUnreachable")
                          : !c.healthy
                            ? t("machines.containerUnhealthy")
                            : c.busy
                              ? t("machines.containerBusy")
                              : t("machines.containerIdle")}
                        {c.last_error && ` — ${c.last_error}`}
                      </div>
                    ))}
                  </dd>
                </>
              )}
              {m.warnings.length > 0 && (
                <>
                  <dt>{t("machines.warnings")}</dt>
                  <dd>{m.warnings.join("; ")}</dd>
                </>
              )}
            </dl>
            <button
              type="button"
              data-action={m.draining ? "resume" : "drain"}
              disabled={busy === m.name}
              onClick={() => void toggle(m)}
            >
              {m.draining ? t("machines.resume") : t("machines.drain")}
            </button>
          </article>
        ))}
      </div>
    </section>
  );
}
