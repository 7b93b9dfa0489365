import { access, constants } from "node:fs/promises";
import type { Browser, ConsoleMessage, Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** What a machine without the browser needs; printed once by test/global-setup.ts. */
export const CHROMIUM_HINT = `dashboard browser tests skipped: no ${CHROMIUM} (apt-get install chromium)`;

/**
 * Debian's Chromium, which playwright-core drives (it downloads no browser of its own). Without it
 * the dashboard's browser tests are skipped, except under CI, whose script installs it.
 */
export async function locateChromium(): Promise<string | undefined> {
  const found = await access(CHROMIUM, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (found) return CHROMIUM;
  if (process.env.CI) throw new Error(`${CHROMIUM_HINT}; .ci/run should have installed it`);
  return undefined;
}

export const chromiumPath: string | undefined = await locateChromium();

export async function launchChromium(): Promise<Browser> {
  if (chromiumPath === undefined) throw new Error(CHROMIUM_HINT);
  const { chromium } = await import("playwright-core");
  // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox"] });
}

/**
 * Every console error and uncaught exception of the page, for a test to assert there were none.
 * `allow` lets a test expect some (a 401 it provokes on purpose shows as a failed resource load).
 */
export function collectPageErrors(page: Page, allow: (text: string) => boolean = () => false): string[] {
  const errors: string[] = [];
  page.on("console", (message: ConsoleMessage) => {
    if (message.type() === "error" && !allow(message.text())) errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  return errors;
}
