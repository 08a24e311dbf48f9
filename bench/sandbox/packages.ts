/**
 * Package fetch from an index: cold (empty cache) vs cached, python (two wheels) and npm (two
 * tarballs), beside the same pip/npm command run bare (no sandbox, no proxy, no cache) in the same
 * run, interleaved.   npx tsx bench/sandbox/packages.ts [--iterations 10] [--file-delay-ms 200]
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
const run = promisify(execFile);
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PackageFetcher } from "../../packages/platform/src/sandbox/package-fetch.js";
import {
  buildNpmTarball,
  buildWheel,
  startNpmRegistry,
  startSimpleIndex,
  worldReadableTempDir,
} from "../../packages/platform/src/sandbox/test-support/packages.js";

const arg = (n: string, d: number) =>
  process.argv.includes(`--${n}`) ? Number(process.argv[process.argv.indexOf(`--${n}`) + 1]) : d;
const N = arg("iterations", 10);
/** Holds back each wheel/tarball response this long, as a far-away index would. */
const DELAY = arg("file-delay-ms", 0);
const wheels = worldReadableTempDir("bench-wheels-");
buildWheel(wheels, { name: "hexr-top", module: "from hexr_dep import D\n", requires: ["hexr-dep"] });
buildWheel(wheels, { name: "hexr-dep", module: "D = 1\n" });
const tgz = worldReadableTempDir("bench-npm-");
buildNpmTarball(tgz, { name: "hexr-npm-dep", indexJs: "module.exports = 1;\n" });
buildNpmTarball(tgz, {
  name: "hexr-npm-top",
  indexJs: "module.exports = require('hexr-npm-dep');\n",
  dependencies: { "hexr-npm-dep": "1.0.0" },
});
const py = await startSimpleIndex(
  readdirSync(wheels).map((f) => join(wheels, f)),
  { fileDelayMs: DELAY },
);
const reg = await startNpmRegistry(
  readdirSync(tgz).map((f) => join(tgz, f)),
  { fileDelayMs: DELAY },
);
const warmCache = worldReadableTempDir("bench-cache-");
const warm = new PackageFetcher({ python: { url: `${py.origin}/simple/` }, npm: { url: reg.origin }, cacheDir: warmCache });

const t = (f: () => unknown) => async () => {
  const s = performance.now();
  await f();
  return performance.now() - s;
};
let seq = 0;
async function fetchOnce(f: PackageFetcher, language: "python" | "javascript") {
  const r = await f.fetch({
    id: `b${++seq}`,
    language,
    specs: [language === "python" ? "hexr-top" : "hexr-npm-top"],
    timeoutMs: 120_000,
  });
  rmSync(r.sourceDir, { recursive: true, force: true });
}
async function cold(language: "python" | "javascript") {
  const cache = worldReadableTempDir("bench-cold-");
  const f = new PackageFetcher({ python: { url: `${py.origin}/simple/` }, npm: { url: reg.origin }, cacheDir: cache });
  try {
    await fetchOnce(f, language);
  } finally {
    await f.stop();
    rmSync(cache, { recursive: true, force: true });
  }
}
async function bare(language: "python" | "javascript") {
  const out = worldReadableTempDir("bench-bare-");
  try {
    if (language === "python")
      await run("/usr/bin/python3", [
        "-m",
        "pip",
        "download",
        "--isolated",
        "--only-binary=:all:",
        "--no-cache-dir",
        "-q",
        "--disable-pip-version-check",
        "--dest",
        out,
        "--index-url",
        `${py.origin}/simple/`,
        "hexr-top",
      ]);
    else
      await run("/usr/bin/npm", [
        "install",
        "--prefix",
        out,
        "--registry",
        reg.origin,
        "--cache",
        join(out, ".c"),
        "--ignore-scripts",
        "--no-save",
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        "--loglevel",
        "error",
        "hexr-npm-top",
      ]);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
await fetchOnce(warm, "python"); // fill the warm cache
await fetchOnce(warm, "javascript");
const cases: Record<string, () => Promise<number>> = {
  "python bare pip download": t(() => bare("python")),
  "python fetch cold": t(() => cold("python")),
  "python fetch cached": t(() => fetchOnce(warm, "python")),
  "npm bare npm install": t(() => bare("javascript")),
  "npm fetch cold": t(() => cold("javascript")),
  "npm fetch cached": t(() => fetchOnce(warm, "javascript")),
};
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let i = 0; i < N; i++) for (const [k, f] of Object.entries(cases)) samples[k]!.push(await f());
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
console.log(`iterations: ${N}, file delay: ${DELAY} ms`);
for (const [k, xs] of Object.entries(samples))
  console.log(
    `${k.padEnd(28)} p50 ${q(xs, 0.5).toFixed(0).padStart(5)} ms   min ${Math.min(...xs)
      .toFixed(0)
      .padStart(5)} ms   max ${Math.max(...xs)
      .toFixed(0)
      .padStart(5)} ms`,
  );
for (const lang of ["python", "npm"]) {
  const base = q(samples[lang === "python" ? "python bare pip download" : "npm bare npm install"]!, 0.5);
  const ratio = (k: string) => `${(q(samples[`${lang} fetch ${k}`]!, 0.5) / base).toFixed(2)}x`;
  console.log(`${lang}: confined fetch vs bare (p50) cold ${ratio("cold")}, cached ${ratio("cached")}`);
}
await warm.stop();
await Promise.all([py.close(), reg.close()]);
for (const d of [wheels, tgz, warmCache]) rmSync(d, { recursive: true, force: true });
