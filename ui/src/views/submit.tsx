import { useEffect, useState } from "preact/hooks";
import type { Avatar, Task, Voice } from "../../../src/client/index.js";
import { t } from "../i18n/index.js";
import { href } from "../route.js";
import { useConnection } from "../use-connection.js";

export function SubmitView() {
  const connection = useConnection();
  const [percent, setPercent] = useState<number | undefined>();
  const [created, setCreated] = useState<Task | undefined>();
  const [error, setError] = useState<string | undefined>();
  // Avatars uploaded once (POST /avatars): a task then sends its audio alone.
  const [avatars, setAvatars] = useState<Avatar[]>([]);
  const [avatarId, setAvatarId] = useState("");
  // What is said: an audio file, or a text the machine speaks (in a voice from POST /voices).
  const [say, setSay] = useState<"audio" | "text">("audio");
  const [voices, setVoices] = useState<Voice[]>([]);

  useEffect(() => {
    connection.client.listAvatars({ limit: 200 }).then(
      (page) => setAvatars(page.avatars),
      () => setAvatars([]),
    );
    connection.client.listVoices({ limit: 200 }).then(
      (page) => setVoices(page.voices),
      () => setVoices([]),
    );
  }, [connection]);

  const submit = async (form: HTMLFormElement) => {
    const data = new FormData(form);
    const audio = data.get("audio");
    const text = String(data.get("text") ?? "").trim();
    const video = data.get("video");
    const hasVideo = video instanceof File && video.size > 0;
    const hasAudio = audio instanceof File && audio.size > 0;
    if ((say === "audio" ? !hasAudio : text === "") || (!hasVideo && avatarId === "")) {
      setError(t(say === "audio" ? "submit.missing" : "submit.missingText"));
      return;
    }
    if (avatarId !== "") data.delete("video");
    if (say === "text") data.delete("audio");
    data.delete("say");
    for (const [name, value] of [...data.entries()]) {
      if (value === "" || (value instanceof File && value.size === 0 && name !== "audio")) data.delete(name);
    }
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
        <fieldset class="say">
          <label>
            <input
              type="radio"
              name="say"
              value="audio"
              checked={say === "audio"}
              onChange={() => setSay("audio")}
            />
            {t("submit.sayAudio")}
          </label>
          <label>
            <input
              type="radio"
              name="say"
              value="text"
              checked={say === "text"}
              onChange={() => setSay("text")}
            />
            {t("submit.sayText")}
          </label>
        </fieldset>
        {say === "audio" ? (
          <label>
            {t("submit.audio")}
            <input type="file" name="audio" accept="audio/*,.wav,.mp3,.m4a,.flac,.ogg" />
          </label>
        ) : (
          <>
            <label>
              {t("submit.text")}
              <textarea name="text" rows={4} maxLength={20000} />
            </label>
            <label>
              {t("submit.voice")}
              <select name="voice_id">
                <option value="">{t("submit.voiceNone")}</option>
                {voices.map((v) => (
                  <option value={v.voice_id}>
                    {v.name ?? v.voice_id.slice(0, 8)} ({v.lang})
                  </option>
                ))}
              </select>
            </label>
          </>
        )}
        {avatars.length > 0 && (
          <label>
            {t("submit.avatar")}
            <select name="avatar_id" value={avatarId} onChange={(e) => setAvatarId(e.currentTarget.value)}>
              <option value="">{t("submit.avatarNone")}</option>
              {avatars.map((a) => (
                <option value={a.avatar_id}>
                  {a.name ?? a.avatar_id.slice(0, 8)} ({a.duration.toFixed(1)} s, {a.width}×{a.height})
                </option>
              ))}
            </select>
          </label>
        )}
        {avatarId === "" && (
          <label>
            {t("submit.video")}
            <input type="file" name="video" accept="video/*,.mp4,.mov,.mkv,.webm" />
          </label>
        )}
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
