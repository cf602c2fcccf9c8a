import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the app with hot reload and sends the API calls
// (gRPC-web, and the sign-in helper) to a FocusForge on FOCUSFORGE_URL.
const api = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.FOCUSFORGE_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  server: {
    proxy: {
      "^/focusforge\\..*": { target: api, changeOrigin: false },
      "/dev/token": { target: api },
    },
  },
});
