import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * The dashboard (issue 11): Preact with Vite, built into dist/ui and served by the gateway at /ui.
 * JSX goes through esbuild's automatic runtime, so no Vite plugin is needed for Preact.
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  logLevel: "warn",
  resolve: {
    alias: [
      { find: /^node:.*/, replacement: fileURLToPath(new URL("src/node-builtin.ts", import.meta.url)) },
    ],
  },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: fileURLToPath(new URL("../dist/ui", import.meta.url)),
    emptyOutDir: true,
    // The gateway's Content-Security-Policy allows scripts from 'self' only: no inline polyfill.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: "es2022",
    reportCompressedSize: false,
  },
});
