import { en, type MessageKey } from "./en.js";
import { zh } from "./zh.js";

export type Lang = "en" | "zh";
export const CATALOGUES: Record<Lang, Record<MessageKey, string>> = { en, zh };

const STORAGE_KEY = "multi-heygem.lang";

/** The remembered choice, else the browser's first language: zh* gets Chinese, anything else English. */
export function initialLang(): Lang {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved === "en" || saved === "zh") return saved;
  const first = navigator.languages?.[0] ?? navigator.language ?? "en";
  return first.toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current: Lang = "en";

export function setLang(lang: Lang, remember: boolean): void {
  current = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  if (remember) localStorage.setItem(STORAGE_KEY, lang);
}

export function lang(): Lang {
  return current;
}

/** The string of `key` in the current language, with `{name}` filled from `values`. */
export function t(key: MessageKey, values: Record<string, string | number> = {}): string {
  return CATALOGUES[current][key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in values ? String(values[name]) : whole,
  );
}
