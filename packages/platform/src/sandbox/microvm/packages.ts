/**
 * What a microVM execution's packages become before they go to the guest: the guest has no pip and
 * no npm, so the host picks the exact files and the guest agent's job process unpacks them into the
 * execution's private /tmp (see guest.ts).
 *
 * - python from a local directory: pip's own resolver decides which wheels the requested specs and
 *   their dependencies need (`pip install --dry-run --report` against the directory, wheels only, so
 *   no package code runs); only those wheels are sent.
 * - python fetched from an index: the fetch left exactly the wheels it resolved; all are sent.
 * - javascript from a local directory: the tarballs planPackages picked; the guest unpacks each into
 *   node_modules and checks that every dependency is among them (as an offline npm install would).
 * - javascript fetched from a registry: the fetch's complete node_modules tree, as one tar.
 */

import { HexrError } from "@hexr/core";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { PackageInstall } from "../types.js";

/** How the guest installs the files. */
export type PayloadKind = "wheels" | "npm-tree" | "npm-tarballs";

export interface PackagePayload {
  language: "python" | "javascript";
  kind: PayloadKind;
  files: Array<{ name: string; data: Buffer }>;
}

/** The most package bytes one execution may send into its VM (further bounded by its /tmp size). */
export const MAX_PACKAGE_BYTES = 64 * 1024 * 1024;

/** The python the host resolves wheels with: the guest's is Debian's python3.11 too. */
const HOST_PYTHON = "/usr/bin/python3";
const GUEST_PYTHON_VERSION = "3.11";

interface PayloadOptions {
  /** What may go to the guest: min(MAX_PACKAGE_BYTES, the execution's /tmp). */
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

function tooLarge(bytes: number, max: number): HexrError {
  return new HexrError(
    "sandbox.packages_too_large",
    `the packages of this execution are ${(bytes / 1048576).toFixed(1)} MiB; the microvm backend takes at most ${(
      max / 1048576
    ).toFixed(1)} MiB (bounded by sandbox.tmpfsMb, where they are installed)`,
    { kind: "payload_too_large", details: { limit: max } },
  );
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; timeoutMs: number; maxBuffer: number; signal?: AbortSignal },
): Promise<{ code: number | null; stdout: Buffer; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: { PATH: "/usr/bin:/bin", HOME: opts.cwd, LANG: "C.UTF-8" },
        timeout: opts.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: opts.maxBuffer,
        encoding: "buffer",
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
        resolve({
          code: e ? (typeof e.code === "number" ? e.code : null) : 0,
          stdout,
          stderr: stderr.toString() || (e && typeof e.code !== "number" ? e.message : ""),
          timedOut: !!e?.killed && !opts.signal?.aborted,
        });
      },
    );
  });
}

/**
 * The wheels of `dir` that `specs` need, as pip resolves them (the newest matching versions, every
 * dependency, no sdists). A spec nothing in the directory satisfies is named.
 */
export async function resolveWheels(dir: string, specs: string[], opts: PayloadOptions): Promise<string[]> {
  const work = mkdtempSync(join(tmpdir(), "hexr-mv-resolve-"));
  try {
    const report = join(work, "report.json");
    const r = await run(
      HOST_PYTHON,
      [
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--report",
        report,
        // Never installs (a dry run); --target is what lets pip resolve for the guest's python version.
        "--target",
        join(work, "never-written"),
        "--python-version",
        GUEST_PYTHON_VERSION,
        "--ignore-installed",
        "--no-index",
        "--find-links",
        dir,
        "--only-binary=:all:",
        "--isolated",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--quiet",
        "--",
        ...specs,
      ],
      { cwd: work, timeoutMs: opts.timeoutMs, maxBuffer: 4 * 1024 * 1024, ...(opts.signal ? { signal: opts.signal } : {}) },
    );
    if (opts.signal?.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
    if (r.timedOut) {
      throw new HexrError(
        "sandbox.package_install_timeout",
        "resolving the python packages took longer than the install timeout",
        {
          kind: "timeout",
        },
      );
    }
    if (r.code !== 0) {
      const missing = /No matching distribution found for ([^\s]+)/.exec(r.stderr)?.[1];
      if (missing) {
        const name = /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(missing)?.[0] ?? missing;
        throw new HexrError(
          "sandbox.package_unavailable",
          `package '${missing}' cannot be had from the python package directory ${dir} (the microvm backend installs wheels only; add one, e.g. with 'pip download -d')`,
          { kind: "failed_precondition", details: { package: name } },
        );
      }
      if (/No module named pip/.test(r.stderr)) {
        throw new HexrError(
          "sandbox.package_install_failed",
          "resolving python packages for the microvm backend needs pip on the host (apt-get install python3-pip)",
          { kind: "failed_precondition" },
        );
      }
      const tail = r.stderr.trim().split("\n").slice(-5).join("\n").slice(-1500);
      throw new HexrError("sandbox.package_install_failed", `resolving the python packages failed:\n${tail}`, {
        kind: "failed_precondition",
      });
    }
    const doc = JSON.parse(readFileSync(report, "utf8")) as { install?: Array<{ download_info?: { url?: string } }> };
    return (doc.install ?? []).map((i) => {
      const url = i.download_info?.url ?? "";
      if (!url.startsWith("file:")) throw new Error(`pip resolved to ${url}, not a file of ${dir}`);
      return fileURLToPath(url);
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Reads the files, within the size limit. */
function readAll(paths: string[], maxBytes: number): Array<{ name: string; data: Buffer }> {
  let total = 0;
  for (const p of paths) total += statSync(p).size;
  if (total > maxBytes) throw tooLarge(total, maxBytes);
  return paths.map((p) => ({ name: basename(p), data: readFileSync(p) }));
}

/** The node_modules tree a registry fetch produced, as one tar (symlinks such as .bin are kept as links). */
async function tarTree(dir: string, opts: PayloadOptions): Promise<Buffer> {
  const r = await run("tar", ["--create", "--file=-", "--directory", dir, "--", "node_modules"], {
    cwd: dir,
    timeoutMs: opts.timeoutMs,
    maxBuffer: opts.maxBytes + 1024 * 1024,
  });
  if (r.code !== 0) {
    if (/maxBuffer/i.test(r.stderr)) throw tooLarge(opts.maxBytes + 1, opts.maxBytes);
    throw new HexrError(
      "sandbox.package_install_failed",
      `packing the fetched node_modules failed: ${r.stderr.trim().slice(-500)}`,
      {
        kind: "failed_precondition",
      },
    );
  }
  if (r.stdout.length > opts.maxBytes) throw tooLarge(r.stdout.length, opts.maxBytes);
  return r.stdout;
}

/**
 * The files an execution's packages need in the guest. A fetched directory is the backend's to
 * remove, whatever happens here.
 */
export async function packagePayload(install: PackageInstall, opts: PayloadOptions): Promise<PackagePayload> {
  const dir = install.sourceDir;
  try {
    if (install.language === "python") {
      const wheels =
        install.origin === "fetched"
          ? readdirSync(dir)
              .filter((f) => f.endsWith(".whl"))
              .sort()
              .map((f) => join(dir, f))
          : await resolveWheels(dir, install.items, opts);
      return { language: "python", kind: "wheels", files: readAll(wheels, opts.maxBytes) };
    }
    if (install.origin === "fetched") {
      return { language: "javascript", kind: "npm-tree", files: [{ name: "node_modules.tar", data: await tarTree(dir, opts) }] };
    }
    return {
      language: "javascript",
      kind: "npm-tarballs",
      files: readAll(
        install.items.map((f) => join(dir, basename(f))),
        opts.maxBytes,
      ),
    };
  } finally {
    if (install.origin === "fetched") rmSync(dir, { recursive: true, force: true });
  }
}
