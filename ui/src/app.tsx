import { useEffect, useMemo, useState } from "preact/hooks";
import { Connection, type LiveState } from "./connection.js";
import { initialLang, type Lang, lang, setLang, t } from "./i18n/index.js";
import { KeyPrompt } from "./key-prompt.js";
import { href, useRoute } from "./route.js";
import { ConnectionContext } from "./use-connection.js";
import { MachinesView } from "./views/machines.js";
import { QueueView } from "./views/queue.js";
import { SubmitView } from "./views/submit.js";
import { TaskView } from "./views/task.js";

export function App() {
  const [language, setLanguage] = useState<Lang>(() => {
    const chosen = initialLang();
    setLang(chosen, false);
    return chosen;
  });
  const [askKey, setAskKey] = useState(false);
  const [live, setLive] = useState<LiveState>("connecting");
  const connection = useMemo(() => new Connection(() => setAskKey(true), setLive), []);
  const [keyVersion, setKeyVersion] = useState(0);
  const route = useRoute();

  useEffect(() => {
    connection.start();
    return () => connection.stop();
  }, [connection]);

  const switchLanguage = () => {
    const next: Lang = lang() === "zh" ? "en" : "zh";
    setLang(next, true);
    setLanguage(next);
  };
  const useKey = (key: string | undefined) => {
    connection.setKey(key);
    setAskKey(false);
    // Views remount and load again with the new key.
    setKeyVersion((v) => v + 1);
  };

  const nav = (view: "queue" | "machines" | "submit", label: string) => (
    <a href={href({ view })} class={route.view === view ? "active" : ""} data-nav={view}>
      {label}
    </a>
  );

  return (
    <ConnectionContext.Provider value={connection}>
      <header>
        <strong class="brand">{t("app.title")}</strong>
        <nav>
          {nav("queue", t("nav.queue"))}
          {nav("machines", t("nav.machines"))}
          {nav("submit", t("nav.submit"))}
        </nav>
        <span class={`live live-${live}`} data-live={live}>
          {live === "live" ? t("live.on") : live === "polling" ? t("live.polling") : t("live.off")}
        </span>
        <button type="button" class="link" onClick={() => setAskKey(true)} data-action="key">
          {t("nav.key")}: {connection.key ? t("key.set") : t("key.none")}
        </button>
        <button
          type="button"
          class="link"
          onClick={switchLanguage}
          data-action="language"
          lang={language === "zh" ? "en" : "zh-CN"}
        >
          {t("lang.switch")}
        </button>
      </header>
      {askKey && (
        <KeyPrompt hasKey={connection.key !== undefined} onSave={useKey} onClose={() => setAskKey(false)} />
      )}
      <main key={`${keyVersion}-${language}`}>
        {route.view === "queue" && <QueueView />}
        {route.view === "task" && <TaskView id={route.id} />}
        {route.view === "machines" && <MachinesView />}
        {route.view === "submit" && <SubmitView />}
      </main>
    </ConnectionContext.Provider>
  );
}
