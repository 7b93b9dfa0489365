import { lang, t } from "./i18n/index.js";

/** Seconds as "42 s", "3 min 5 s" or "2 h 10 min". */
export function duration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  if (total < 60) return t("time.seconds", { n: total });
  const m = Math.floor(total / 60);
  if (m < 60) return t("time.minutes", { m, s: total % 60 });
  return t("time.hours", { h: Math.floor(m / 60), m: m % 60 });
}

export function between(from: string | null, to: string | null | number): number | undefined {
  if (from === null || to === null) return undefined;
  const end = typeof to === "number" ? to : Date.parse(to);
  return end - Date.parse(from);
}

export function dateTime(iso: string | null): string {
  if (iso === null) return "—";
  return new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB");
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** A size as "812 kB" or "104.9 MB" (decimal units, as disks and uploads are counted). */
export function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}
