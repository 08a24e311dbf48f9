import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      "@hexr/core": src("./packages/core/src/index.ts"),
      "@hexr/platform": src("./packages/platform/src/index.ts"),
      hexr: src("./packages/sdk/src/index.ts"),
    },
  },
  test: {
    include: ["packages/*/src/**/*.test.ts", "test/**/*.test.ts"],
    // CLI tests spawn node processes; on a loaded 2-core machine a few of them together can take a minute.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["default"],
  },
});
