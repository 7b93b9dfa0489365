import { afterEach } from "vitest";

/**
 * What a test starts (servers, workers, folders) and must stop however it ends: push a stop, and
 * after each test they run, the last pushed first.
 */
export function cleanupsAfterEach(): (() => Promise<void>)[] {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return cleanups;
}
