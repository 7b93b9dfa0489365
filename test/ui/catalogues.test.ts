import { describe, expect, it } from "vitest";
import { en } from "../../ui/src/i18n/en.js";
import { zh } from "../../ui/src/i18n/zh.js";

/** Issue 11: the dashboard speaks Chinese and English from one catalogue each, with the same keys. */
describe("the dashboard's catalogues", () => {
  it("have the same keys, each with a non-empty string", () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    for (const catalogue of [en, zh]) {
      for (const [key, text] of Object.entries(catalogue)) expect(text.trim(), key).not.toBe("");
    }
  });

  it("use the same {placeholders} for each key", () => {
    const names = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const key of Object.keys(en) as (keyof typeof en)[])
      expect(names(zh[key]), key).toEqual(names(en[key]));
  });
});
