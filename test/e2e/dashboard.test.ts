import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { EMBEDDED_MACHINE } from "../../src/gateway/server.js";
import { testKey, writeKeysFile } from "../helpers/api-keys.js";
import { chromiumPath, collectPageErrors, launchChromium } from "../helpers/browser.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo } from "../helpers/media.js";
import { until } from "../helpers/until.js";

/**
 * Issue 11: the dashboard in a real browser (Debian's Chromium through playwright-core) against a
 * real gateway whose embedded ffmpeg worker makes real MP4s.
 *
 * Screenshots of the three main views are taken on every run; `UPDATE_SCREENSHOTS=1` writes them
 * to docs/ (for the README), otherwise to the test's temp dir so a run leaves the tree clean.
 */
const AUDIO_SECONDS = 2;
const VIEWPORT = { width: 1200, height: 760 };
const DOCS = join(import.meta.dirname, "../../docs");

/** The parts of the page's objects the tests touch (the test files compile without the DOM lib). */
interface VideoElement {
  readyState: number;
  duration: number;
  currentTime: number;
  muted: boolean;
  play(): Promise<void>;
  pause(): void;
  addEventListener(type: string, listener: () => void): void;
}
type PageGlobals = { stayed?: boolean; document: { documentElement: { lang: string } } };

describe.skipIf(chromiumPath === undefined)("the dashboard in a browser", () => {
  let dir: string;
  let browser: Browser;
  let context: BrowserContext | undefined;
  /** Console errors and uncaught exceptions of every page a test opened. */
  let errors: string[][] = [];
  let shots: string;

  beforeAll(async () => {
    dir = await tempDir();
    await makeAudio(join(dir, "speech.wav"), { seconds: AUDIO_SECONDS });
    await makeVideo(join(dir, "person.mp4"), { seconds: 1 });
    shots = process.env.UPDATE_SCREENSHOTS ? DOCS : join(dir, "shots");
    await mkdir(shots, { recursive: true });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await removeDir(dir);
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
    expect(errors.flat()).toEqual([]);
    errors = [];
  });

  async function open(
    url: string,
    options: { locale?: string; allow?: (text: string) => boolean; viewport?: typeof VIEWPORT } = {},
  ): Promise<Page> {
    context = await browser.newContext({
      viewport: options.viewport ?? VIEWPORT,
      locale: options.locale ?? "en-US",
    });
    const page = await context.newPage();
    errors.push(collectPageErrors(page, options.allow));
    await page.goto(url);
    return page;
  }

  describe("without API keys", () => {
    let gateway: Awaited<ReturnType<typeof startTestGateway>>;
    let client: Client;

    beforeAll(async () => {
      gateway = await startTestGateway({}, join(dir, "open"));
      client = new Client({ url: gateway.url });
    });
    afterAll(async () => {
      await gateway?.close();
    });

    it("sends a browser from / to /ui/ and serves the page under a strict CSP", async () => {
      const page = await open(`${gateway.url}/`);
      expect(new URL(page.url()).pathname).toBe("/ui/");
      await page.locator("[data-live=live]").waitFor();
      const index = await fetch(`${gateway.url}/ui/`);
      expect(index.headers.get("content-security-policy")).toContain("script-src 'self'");
      expect(index.headers.get("cache-control")).toBe("no-cache");
      const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(await index.text())?.[1];
      const asset = await fetch(`${gateway.url}${script}`);
      expect(asset.headers.get("cache-control")).toContain("immutable");
      // API clients keep getting JSON from /.
      expect(await (await fetch(`${gateway.url}/`)).json()).toMatchObject({ name: "multi-heygem" });
    });

    it("drains a machine, takes an upload while it is drained, and follows the task live to a playing result", async () => {
      const page = await open(`${gateway.url}/ui/#/machines`);
      const card = page.locator(`[data-machine="${EMBEDDED_MACHINE}"]`);
      await card.locator("[data-action=drain]").click();
      await card.locator("[data-action=resume]").waitFor();
      expect((await client.machines()).find((m) => m.name === EMBEDDED_MACHINE)?.draining).toBe(true);

      await page.locator("[data-nav=submit]").click();
      await page.locator("input[name=audio]").setInputFiles(join(dir, "speech.wav"));
      await page.locator("input[name=video]").setInputFiles(join(dir, "person.mp4"));
      await page.locator("input[name=description]").fill("dashboard upload");
      await page.locator("button[type=submit]").click();
      const created = page.locator("[data-created]");
      await created.waitFor();
      const id = (await created.getAttribute("data-created")) ?? "";
      expect((await client.getTask(id)).description).toBe("dashboard upload");

      // The page is never reloaded from here on: what changes, the stream brought.
      await page.evaluate(() => {
        (globalThis as unknown as PageGlobals).stayed = true;
      });
      await page.locator("[data-nav=queue]").click();
      await page.locator(`tr[data-task="${id}"][data-status=pending]`).waitFor();

      await page.locator("[data-nav=machines]").click();
      await card.locator("[data-action=resume]").click();
      await card.locator("[data-action=drain]").waitFor();
      expect((await client.machines()).find((m) => m.name === EMBEDDED_MACHINE)?.draining).toBe(false);

      await page.locator("[data-nav=queue]").click();
      await page.locator(`tr[data-task="${id}"][data-status=completed]`).waitFor({ timeout: 60_000 });
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).stayed)).toBe(true);
      await page.screenshot({ path: join(shots, "dashboard-queue.png") });

      await page.locator(`tr[data-task="${id}"] a`).click();
      const video = page.locator(`video[data-result="${id}"]`);
      await video.waitFor();
      const duration = await video.evaluate(async (element) => {
        const v = element as unknown as VideoElement;
        if (v.readyState < 1)
          await new Promise<void>((resolve) => v.addEventListener("loadedmetadata", resolve));
        v.muted = true;
        await v.play();
        return v.duration;
      });
      expect(duration).toBeCloseTo(AUDIO_SECONDS, 0);
      // The inputs' facts: names and sizes as uploaded.
      const video_ = (await page.locator("[data-fact=video]").textContent()) ?? "";
      expect(video_).toContain("person.mp4");
      expect(await page.locator("[data-fact=audio_duration]").textContent()).toMatch(
        /speech\.wav · [\d.]+ kB/,
      );
      await until(() => video.evaluate((v) => (v as unknown as VideoElement).currentTime > 0), 20_000, {
        what: "the result to play",
      });
      await video.evaluate((v) => {
        const el = v as unknown as VideoElement;
        el.pause();
        el.currentTime = 0;
      });
      await page.locator("[data-event=completed]").waitFor();
      expect(await page.locator("[data-attempt]").count()).toBe(1);
      await page.screenshot({ path: join(shots, "dashboard-task.png"), fullPage: true });

      await page.locator("[data-nav=machines]").click();
      await page.locator(`[data-machine="${EMBEDDED_MACHINE}"] [data-fact=load]`).waitFor();
      await page.screenshot({ path: join(shots, "dashboard-machines.png") });
    });

    it("cancels a pending task from its page, retries it, and deletes it", async () => {
      await client.drain(EMBEDDED_MACHINE);
      try {
        const task = await client.createTask({
          audio: join(dir, "speech.wav"),
          video: join(dir, "person.mp4"),
          description: "to be cancelled",
        });
        const page = await open(`${gateway.url}/ui/#/task/${task.task_id}`);
        const view = page.locator(`section[data-task="${task.task_id}"]`);
        await page.locator(`section[data-task="${task.task_id}"][data-status=pending]`).waitFor();
        await view.locator("[data-action=cancel]").click();
        await page.locator(`section[data-task="${task.task_id}"][data-status=cancelled]`).waitFor();
        expect((await client.getTask(task.task_id)).status).toBe("cancelled");
        await page.locator("[data-event=cancelled]").waitFor();

        await view.locator("[data-action=retry]").click();
        await page.locator(`section[data-task="${task.task_id}"][data-status=pending]`).waitFor();
        expect((await client.getTask(task.task_id)).status).toBe("pending");
        await client.cancel(task.task_id);
        await page.locator(`section[data-task="${task.task_id}"][data-status=cancelled]`).waitFor();

        page.once("dialog", (dialog) => void dialog.accept());
        await view.locator("[data-action=delete]").click();
        await page.locator("[data-gone=deleted]").waitFor();
        expect(await client.getTask(task.task_id).catch((e: unknown) => e)).toMatchObject({ status: 404 });
      } finally {
        await client.resume(EMBEDDED_MACHINE);
      }
    });

    it("submits with an avatar uploaded once: the form sends the audio alone", async () => {
      const avatar = await client.createAvatar({ video: join(dir, "person.mp4"), name: "presenter" });
      const page = await open(`${gateway.url}/ui/#/submit`);
      await page.locator("select[name=avatar_id]").selectOption(avatar.avatar_id);
      // With an avatar chosen there is no video to pick.
      expect(await page.locator("input[name=video]").count()).toBe(0);
      await page.locator("input[name=audio]").setInputFiles(join(dir, "speech.wav"));
      await page.locator("button[type=submit]").click();
      const created = page.locator("[data-created]");
      await created.waitFor();
      const id = (await created.getAttribute("data-created")) ?? "";
      const done = await client.waitFor(id);
      expect(done).toMatchObject({
        status: "completed",
        avatar_id: avatar.avatar_id,
        video_bytes: avatar.bytes,
      });
    });

    it("submits a text instead of an audio file, and its page shows what was said (issue 12)", async () => {
      const avatar = await client.createAvatar({ video: join(dir, "person.mp4"), name: "speaker" });
      const page = await open(`${gateway.url}/ui/#/submit`);
      await page.locator("input[name=say][value=text]").check();
      expect(await page.locator("input[name=audio]").count()).toBe(0);
      // The embedded worker's offline voice: no voice to choose but the machine's own.
      expect(await page.locator("select[name=voice_id] option").count()).toBe(1);
      await page.locator("textarea[name=text]").fill("你好，欢迎。");
      await page.locator("select[name=avatar_id]").selectOption(avatar.avatar_id);
      await page.locator("button[type=submit]").click();
      const created = page.locator("[data-created]");
      await created.waitFor();
      const id = (await created.getAttribute("data-created")) ?? "";
      const done = await client.waitFor(id);
      expect(done).toMatchObject({ status: "completed", avatar_id: avatar.avatar_id });
      expect(done.speech).toMatchObject({ text: "你好，欢迎。", spoken: true });
      await created.click();
      await page.locator("[data-fact=speech]", { hasText: "你好，欢迎。" }).waitFor();
      await page.locator("video[data-result]").waitFor();
    });

    it("fits a phone's width: nothing scrolls sideways", async () => {
      const [task] = (await client.listTasks({ status: "completed", limit: 1 })).tasks;
      expect(task).toBeDefined();
      const phone = { width: 390, height: 844 };
      for (const view of ["", "#/machines", "#/submit", `#/task/${task?.task_id}`]) {
        const page = await open(`${gateway.url}/ui/${view}`, { viewport: phone });
        await page.locator("main section h1").waitFor();
        const overflow = await page.evaluate(() => {
          const root = (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } })
            .document.documentElement;
          return root.scrollWidth;
        });
        expect(overflow, view || "queue").toBeLessThanOrEqual(phone.width);
        await context?.close();
        context = undefined;
      }
    });

    it("speaks the browser's language, and the switch changes it and is remembered", async () => {
      const page = await open(`${gateway.url}/ui/`, { locale: "zh-CN" });
      const queue = page.locator("[data-nav=queue]");
      await expect.poll(() => queue.textContent()).toBe("队列");
      await page.locator("[data-action=language]").click();
      await expect.poll(() => queue.textContent()).toBe("Queue");
      await page.reload();
      await expect.poll(() => queue.textContent()).toBe("Queue");
      expect(
        await page.evaluate(() => (globalThis as unknown as PageGlobals).document.documentElement.lang),
      ).toBe("en");
    });
  });

  describe("with API keys", () => {
    let gateway: Awaited<ReturnType<typeof startTestGateway>>;
    const shop = testKey("shop", "submit");

    beforeAll(async () => {
      await mkdir(join(dir, "keyed"), { recursive: true });
      await writeKeysFile(join(dir, "keyed", "keys.json"), [shop]);
      gateway = await startTestGateway(
        { apiKeys: join(dir, "keyed", "keys.json") },
        join(dir, "keyed", "data"),
      );
    });
    afterAll(async () => {
      await gateway?.close();
    });

    it("asks for a key on 401, keeps it in the browser and shows that key's tasks", async () => {
      const mine = await new Client({ url: gateway.url, apiKey: shop.key }).createTask({
        audio: join(dir, "speech.wav"),
        video: join(dir, "person.mp4"),
        description: "the shop's task",
      });
      // The refusals the page provokes before it has a key show as failed loads.
      const page = await open(`${gateway.url}/ui/`, { allow: (text) => /status of 401/.test(text) });
      const dialog = page.locator("[data-dialog=api-key]");
      await dialog.waitFor();
      await dialog.locator("input[name=api-key]").fill(shop.key);
      await dialog.locator("button[type=submit]").click();
      await page.locator(`tr[data-task="${mine.task_id}"]`).waitFor();
      await page.locator("[data-live=live]").waitFor();

      await page.reload();
      await page.locator(`tr[data-task="${mine.task_id}"]`).waitFor();
      expect(await dialog.count()).toBe(0);
    });
  });
});
