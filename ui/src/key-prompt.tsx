import { useState } from "preact/hooks";
import { t } from "./i18n/index.js";

export function KeyPrompt(props: {
  hasKey: boolean;
  onSave: (key: string | undefined) => void;
  onClose: () => void;
}) {
  const [value, setValue] = useState("");
  return (
    <div class="overlay">
      <form
        class="dialog"
        data-dialog="api-key"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) props.onSave(value);
        }}
      >
        <h2>{t("key.title")}</h2>
        <p>{t("key.explain")}</p>
        <label>
          {t("key.label")}
          <input
            type="password"
            name="api-key"
            autocomplete="off"
            value={value}
            onInput={(e) => setValue(e.currentTarget.value)}
          />
        </label>
        <div class="actions">
          <button type="submit">{t("key.save")}</button>
          {props.hasKey && (
            <button type="button" class="secondary" onClick={() => props.onSave(undefined)}>
              {t("key.forget")}
            </button>
          )}
          <button type="button" class="secondary" onClick={props.onClose}>
            ×
          </button>
        </div>
      </form>
    </div>
  );
}
