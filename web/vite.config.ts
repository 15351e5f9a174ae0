import { defineConfig } from "vite";

// The console is plain Preact + TSX; Vite's own transformer compiles the JSX (no Babel preset needed).
export default defineConfig({
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { target: "es2022", sourcemap: false, chunkSizeWarningLimit: 400 },
});
