import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The build lands in ../dashboard_dist, a Python package that Kestrel serves at /app/.
// `npm run dev` proxies the API to a running Kestrel (KESTREL_URL, default the default port).
const kestrel = process.env.KESTREL_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/app/",
  plugins: [react(), tailwindcss()],
  build: {
    outDir: "../dashboard_dist",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    // The polyfill would be one more script; every browser the dashboard targets has it.
    modulePreload: { polyfill: false },
    // Kestrel's CSP forbids data: scripts and styles; keep every asset a file of its own.
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
  server: {
    proxy: Object.fromEntries(
      ["/admin", "/api", "/v1", "/openapi.json", "/health"].map((p) => [p, kestrel]),
    ),
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
