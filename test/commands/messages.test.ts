import { describe, expect, it } from "vitest";
import { CATALOGUES, languageOf, Messages } from "../../src/commands/messages.js";
import { displayWidth, table } from "../../src/commands/table.js";

const placeholders = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("the client commands' messages", () => {
  it("every line has the same placeholders in English and in Chinese", () => {
    const zh: Record<string, string> = CATALOGUES["zh-CN"];
    for (const [key, text] of Object.entries(CATALOGUES.en)) {
      expect(placeholders(zh[key] ?? ""), key).toEqual(placeholders(text));
    }
  });

  it("picks the language as POSIX ranks LC_ALL, LC_MESSAGES and LANG", () => {
    expect(languageOf({})).toBe("en");
    expect(languageOf({ LANG: "zh_CN.UTF-8" })).toBe("zh-CN");
    expect(languageOf({ LANG: "zh_TW.UTF-8" })).toBe("zh-CN");
    expect(languageOf({ LANG: "zh_CN.UTF-8", LC_MESSAGES: "en_US.UTF-8" })).toBe("en");
    expect(languageOf({ LANG: "en_US.UTF-8", LC_ALL: "zh_CN.UTF-8" })).toBe("zh-CN");
    // Set but empty counts as not set.
    expect(languageOf({ LANG: "zh_CN.UTF-8", LC_ALL: "" })).toBe("zh-CN");
    expect(languageOf({ LANG: "C" })).toBe("en");
  });

  it("fills placeholders and translates statuses, leaving unknown words as they came", () => {
    const zh = new Messages("zh-CN");
    expect(zh.t("usage.noMatch", { pattern: "*.wav" })).toBe("没有文件匹配 *.wav");
    expect(zh.word("status", "completed")).toBe("已完成");
    expect(zh.word("status", "teleported")).toBe("teleported");
  });

  it("aligns table columns by the width a terminal draws, two columns per Chinese character", () => {
    expect(displayWidth("名称")).toBe(4);
    expect(table(["名称", "状态"], [["embedded", "在线"]])).toBe("名称      状态\nembedded  在线\n");
  });
});
