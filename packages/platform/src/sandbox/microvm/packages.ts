/**
 * What a microVM execution's packages become before they go to the guest: the guest has no pip and
 * no npm, so the host picks the exact files, reads the archives in memory (./archive.ts; nothing is
 * written on the host) and sends one flat bundle that the execution's own confined process writes
 * into its private /tmp (see guest.ts).
 *
 * - python from a local directory: pip's own resolver decides which wheels the requested specs and
 *   their dependencies need (`pip install --dry-run --report` against the directory, wheels only, so
 *   no package code runs), in a confined process on the host (host-sandbox.ts: the directory
 *   read-only, no network, uid 65534); the answer is kept while the directory does not change; those wheels
 *   are laid out as `pip install --target` would (their .data purelib/platlib merged in, scripts
 *   and headers left out) in /tmp/.hexr/python, which goes first on PYTHONPATH.
 * - python fetched from an index: the fetch left exactly the wheels it resolved; all are used.
 * - javascript from a local directory: the tarballs planPackages picked, each unpacked to
 *   node_modules/<name>; a dependency that is not among them is named (an offline npm install fails
 *   the same way).
 * - javascript fetched from a registry: the fetch's complete node_modules tree (its files; links
 *   such as .bin/ are left out).
 */

import { HexrError } from "@hexr/core";
import { lstatSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveExecutable, type HostSandbox } from "../host-sandbox.js";
import type { PackageInstall } from "../types.js";
import { Budget, bundle, readTarGz, readZip, safePath, type ArchiveFile } from "./archive.js";

export interface PackagePayload {
  language: "python" | "javascript";
  /** The files under /tmp/.hexr (`python/…`, `node/node_modules/…`), as guest.ts's install step reads them. */
  bundle: Buffer;
  /** Files in the bundle. */
  files: number;
}

/** The most package bytes one execution may send into its VM (further bounded by its /tmp size). */
export const MAX_PACKAGE_BYTES = 64 * 1024 * 1024;

/** The python the host resolves wheels with: the guest's is Debian's python3.11 too. */
const HOST_PYTHON = "/usr/bin/python3";
const GUEST_PYTHON_VERSION = "3.11";
/** Where the resolver sees the package directory and writes its report. */
const RESOLVE_PATHS = { wheels: "/wheels", out: "/out" } as const;

interface PayloadOptions {
  /** What may go to the guest: min(MAX_PACKAGE_BYTES, the execution's /tmp). */
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Where pip's resolver runs (python from a local directory). */
  resolver: HostSandbox;
}

function tooLarge(max: number): (bytes: number) => HexrError {
  return (bytes) =>
    new HexrError(
      "sandbox.packages_too_large",
      `the packages of this execution unpack to more than ${(max / 1048576).toFixed(1)} MiB (${(bytes / 1048576).toFixed(
        1,
      )} MiB so far), the most the microvm backend installs (bounded by sandbox.tmpfsMb, where they go)`,
      { kind: "payload_too_large", details: { limit: max } },
    );
}

/**
 * The wheels of `dir` that `specs` need, as pip resolves them (the newest matching versions, every
 * dependency, no sdists). A spec nothing in the directory satisfies is named. pip runs confined:
 * it sees the directory read-only and writes only its report.
 */
export async function resolveWheels(dir: string, specs: string[], opts: PayloadOptions): Promise<string[]> {
  const out = opts.resolver.workDir();
  try {
    const r = await opts.resolver.run({
      command: [
        HOST_PYTHON,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--report",
        `${RESOLVE_PATHS.out}/report.json`,
        // Never installs (a dry run); --target is what lets pip resolve for the guest's python version.
        "--target",
        "/tmp/never-written",
        "--python-version",
        GUEST_PYTHON_VERSION,
        "--ignore-installed",
        "--no-index",
        "--find-links",
        RESOLVE_PATHS.wheels,
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
      binds: [
        { source: dir, dest: RESOLVE_PATHS.wheels },
        { source: out, dest: RESOLVE_PATHS.out, writable: true },
      ],
      timeoutMs: opts.timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (r.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
    if (r.timedOut) {
      throw new HexrError(
        "sandbox.package_install_timeout",
        "resolving the python packages took longer than the install timeout",
        {
          kind: "timeout",
        },
      );
    }
    if (r.exitCode !== 0) throw resolveFailure(dir, r.exitCode, r.log, opts.resolver);
    const doc = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as {
      install?: Array<{ download_info?: { url?: string } }>;
    };
    return (doc.install ?? []).map((i) => {
      const url = i.download_info?.url ?? "";
      const inside = url.startsWith("file:") ? fileURLToPath(url) : "";
      // A file directly in the directory, as --find-links lists them.
      if (posix.dirname(inside) !== RESOLVE_PATHS.wheels) throw new Error(`pip resolved to ${url}, not a file of ${dir}`);
      return join(dir, posix.basename(inside));
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** Why pip's resolver failed, as the caller should see it. */
function resolveFailure(dir: string, exitCode: number | null, log: string, resolver: HostSandbox): HexrError {
  const missing = /No matching distribution found for ([^\s]+)/.exec(log)?.[1];
  if (missing) {
    const name = /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(missing)?.[0] ?? missing;
    return new HexrError(
      "sandbox.package_unavailable",
      `package '${missing}' cannot be had from the python package directory ${dir} (the microvm backend installs wheels only; add one, e.g. with 'pip download -d')`,
      { kind: "failed_precondition", details: { package: name } },
    );
  }
  if (/No module named pip/.test(log)) {
    return new HexrError(
      "sandbox.package_install_failed",
      "resolving python packages for the microvm backend needs pip on the host (apt-get install python3-pip)",
      { kind: "failed_precondition" },
    );
  }
  if (exitCode === null && !resolveExecutable(resolver.bwrap())) {
    return new HexrError(
      "sandbox.package_install_failed",
      "resolving python packages for the microvm backend runs pip confined by bubblewrap on the host, and bubblewrap is not installed (apt-get install bubblewrap; 'hexr sandbox doctor' checks it)",
      { kind: "failed_precondition" },
    );
  }
  const unreachable = /bwrap: Can't find source path ([^:\n]+)/.exec(log)?.[1];
  if (unreachable) {
    return new HexrError(
      "sandbox.package_install_failed",
      `the python package directory ${dir} cannot be read by the user pip's resolver runs as (${unreachable}): every directory above it must let others through, e.g. mode 0755`,
      { kind: "failed_precondition" },
    );
  }
  const tail = log.trim().split("\n").slice(-5).join("\n").slice(-1500);
  return new HexrError("sandbox.package_install_failed", `resolving the python packages failed:\n${tail}`, {
    kind: "failed_precondition",
  });
}

/** pip's answers per directory listing and specs: a local directory rarely changes between executions. */
const resolved = new Map<string, string[]>();
const RESOLVED_MAX = 64;

async function cachedResolve(dir: string, specs: string[], opts: PayloadOptions): Promise<string[]> {
  const listing = readdirSync(dir)
    .sort()
    .map((f) => {
      const st = statSync(join(dir, f));
      return `${f}:${st.size}:${st.mtimeMs}`;
    });
  const key = JSON.stringify([dir, specs, listing]);
  const hit = resolved.get(key);
  if (hit) return hit;
  const wheels = await resolveWheels(dir, specs, opts);
  resolved.set(key, wheels);
  if (resolved.size > RESOLVED_MAX) resolved.delete(resolved.keys().next().value!);
  return wheels;
}

/** A wheel's files as `pip install --target` lays them out. */
function wheelFiles(path: string, budget: Budget): ArchiveFile[] {
  const out: ArchiveFile[] = [];
  for (const f of readZip(readFileSync(path), basename(path), budget)) {
    const [head, kind, ...rest] = f.path.split("/");
    if (head!.endsWith(".data")) {
      if ((kind === "purelib" || kind === "platlib") && rest.length) out.push({ ...f, path: rest.join("/") });
      continue; // scripts, headers, data: not for an import path
    }
    out.push(f);
  }
  return out;
}

/** npm tarballs unpacked to node_modules/<name>, every dependency among them. */
function npmTarballFiles(paths: string[], budget: Budget): ArchiveFile[] {
  const out: ArchiveFile[] = [];
  const names = new Set<string>();
  const wants: Array<{ dep: string; by: string }> = [];
  for (const p of paths) {
    const files = readTarGz(readFileSync(p), basename(p), budget);
    // npm pack puts everything under one top directory (`package/`).
    const top = files[0]?.path.split("/")[0];
    const manifest = files.find((f) => f.path === `${top}/package.json`);
    let pkg: { name?: unknown; dependencies?: Record<string, unknown> } = {};
    try {
      pkg = manifest ? (JSON.parse(manifest.data.toString("utf8")) as typeof pkg) : {};
    } catch {
      // reported below
    }
    const name = typeof pkg.name === "string" ? safePath(pkg.name) : undefined;
    if (!name || name.split("/").length > 2) {
      throw new HexrError("sandbox.package_install_failed", `${basename(p)} has no usable package.json name`, {
        kind: "failed_precondition",
      });
    }
    names.add(name);
    for (const dep of Object.keys(pkg.dependencies ?? {})) wants.push({ dep, by: name });
    for (const f of files) {
      if (f.path.startsWith(`${top}/`)) out.push({ ...f, path: `${name}/${f.path.slice(top!.length + 1)}` });
    }
  }
  const missing = wants.find((w) => !names.has(w.dep));
  if (missing) {
    throw new HexrError(
      "sandbox.package_unavailable",
      `package '${missing.dep}' (a dependency of ${missing.by}) cannot be had: it is not among the packages requested from the npm package directory`,
      { kind: "failed_precondition", details: { package: missing.dep } },
    );
  }
  return out;
}

/** The files of a fetched node_modules tree (links left out). */
function treeFiles(root: string, budget: Budget, rel = ""): ArchiveFile[] {
  const out: ArchiveFile[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(root, r));
    if (st.isDirectory()) out.push(...treeFiles(root, budget, r));
    else if (st.isFile()) {
      const path = safePath(r);
      if (!path) continue;
      budget.take(st.size);
      out.push({ path, executable: (st.mode & 0o111) !== 0, data: readFileSync(join(root, r)) });
    }
  }
  return out;
}

/**
 * The bundle an execution's packages become in the guest. A fetched directory is the backend's to
 * remove, whatever happens here.
 */
export async function packagePayload(install: PackageInstall, opts: PayloadOptions): Promise<PackagePayload> {
  const dir = install.sourceDir;
  const budget = new Budget(opts.maxBytes, tooLarge(opts.maxBytes));
  const under = (prefix: string, files: ArchiveFile[]) => files.map((f) => ({ ...f, path: `${prefix}/${f.path}` }));
  try {
    let files: ArchiveFile[];
    if (install.language === "python") {
      const wheels =
        install.origin === "fetched"
          ? readdirSync(dir)
              .filter((f) => f.endsWith(".whl"))
              .sort()
              .map((f) => join(dir, f))
          : await cachedResolve(dir, install.items, opts);
      files = under(
        "python",
        wheels.flatMap((w) => wheelFiles(w, budget)),
      );
    } else if (install.origin === "fetched") {
      files = under("node/node_modules", treeFiles(join(dir, "node_modules"), budget));
    } else {
      files = under(
        "node/node_modules",
        npmTarballFiles(
          install.items.map((f) => join(dir, basename(f))),
          budget,
        ),
      );
    }
    return { language: install.language, bundle: bundle(files), files: files.length };
  } finally {
    if (install.origin === "fetched") rmSync(dir, { recursive: true, force: true });
  }
}
