import { useState } from "preact/hooks";
import type { Task } from "../../../src/client/index.js";
import { t } from "../i18n/index.js";
import { href } from "../route.js";
import { useConnection } from "../use-connection.js";

export function SubmitView() {
  const connection = useConnection();
  const [percent, setPercent] = useState<number | undefined>();
  const [created, setCreated] = useState<Task | undefined>();
  const [error, setError] = useState<string | undefined>();

  const submit = async (form: HTMLFormElement) => {
    const data = new FormData(form);
    const audio = data.get("audio");
    const video = data.get("video");
    if (!(audio instanceof File) || audio.size === 0 || !(video instanceof File) || video.size === 0) {
      setError(t("submit.missing"));
      return;
    }
    for (const [name, value] of [...data.entries()]) if (value === "") data.delete(name);
    setError(undefined);
    setCreated(undefined);
    setPercent(0);
    try {
      const task = await connection.upload(data, (sent, total) =>
        setPercent(total > 0 ? Math.floor((sent / total) * 100) : 0),
      );
      setCreated(task);
      form.reset();
    } catch (err) {
      setError(connection.explain(err));
    } finally {
      setPercent(undefined);
    }
  };

  return (
    <section>
      <h1>{t("submit.title")}</h1>
      <form
        class="submit"
        onSubmit={(e) => {
          e.preventDefault();
          void submit(e.currentTarget);
        }}
      >
        <label>
          {t("submit.audio")}
          <input type="file" name="audio" accept="audio/*,.wav,.mp3,.m4a,.flac,.ogg" />
        </label>
        <label>
          {t("submit.video")}
          <input type="file" name="video" accept="video/*,.mp4,.mov,.mkv,.webm" />
        </label>
        <label>
          {t("submit.description")}
          <input type="text" name="description" maxLength={2000} />
        </label>
        <label>
          {t("submit.priority")}
          <input type="number" name="priority" step={1} />
        </label>
        <button type="submit" disabled={percent !== undefined}>
          {t("submit.send")}
        </button>
        {percent !== undefined && (
          <p class="upload" data-upload={percent}>
            <progress max={100} value={percent} /> {t("submit.uploading", { percent })}
          </p>
        )}
      </form>
      {error && <p class="error">{error}</p>}
      {created && (
        <p class="created">
          {t("submit.created")}{" "}
          <a href={href({ view: "task", id: created.task_id })} data-created={created.task_id}>
            {created.description || created.task_id}
          </a>
        </p>
      )}
    </section>
  );
}
