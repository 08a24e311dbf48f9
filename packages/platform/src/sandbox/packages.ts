/**
 * Package requests of an execution: syntax per language, and where they come from — the
 * operator's package index (fetched per execution by package-fetch.ts) or a local package
 * directory, resolved here so that a package that cannot be had is named before anything runs.
 */

import { HexrError, type SandboxLanguage } from "@hexr/core";
import { readdirSync } from "node:fs";
import type { PackageInstall } from "./types.js";

export interface PackageSources {
  pythonDir?: string;
  npmDir?: string;
  /** Languages whose packages come from a package index; an index wins over a directory. */
  index?: { python?: boolean; javascript?: boolean };
}

/** Where an execution's packages come from: a local directory (resolved) or the index (fetched later). */
export type PackagePlan =
  { from: "local"; install: PackageInstall } | { from: "index"; language: "python" | "javascript"; specs: string[] };

/** PEP 508 name, optional extras and version specifiers; no URLs, markers or spaces (nothing pip could take as an option). */
const PYTHON_REQ =
  /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?((?:===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]+(?:,(?:===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]+)*)?$/;

/** npm name (optionally scoped) with an optional exact version. */
const NPM_SPEC =
  /^((?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*)(?:@(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?))?$/;

const NPM_TARBALL = /^(.+)-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)\.tgz$/;

/** PEP 503 normalization. */
export function normalizePythonName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

function invalid(index: number, spec: string, what: string): HexrError {
  return new HexrError("sandbox.invalid_package", `packages[${index}] '${spec.slice(0, 100)}' is not a valid ${what}`, {
    kind: "invalid_argument",
    details: { errors: [{ path: `packages.${index}`, message: `not a valid ${what}` }] },
  });
}

function unavailable(pkg: string, language: string, dir: string): HexrError {
  return new HexrError(
    "sandbox.package_unavailable",
    `package '${pkg}' cannot be had: it is not in the ${language} package directory ${dir} (add it there, e.g. with ${
      language === "python" ? "'pip download -d'" : "'npm pack --pack-destination'"
    })`,
    { kind: "failed_precondition", details: { package: pkg } },
  );
}

function listDir(dir: string, language: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    throw new HexrError(
      "sandbox.packages_unreadable",
      `the ${language} package directory ${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      { kind: "failed_precondition" },
    );
  }
}

/** Names of the distributions in a wheel/sdist directory, normalized. */
export function pythonDistributions(files: string[]): Set<string> {
  const names = new Set<string>();
  for (const f of files) {
    if (f.endsWith(".whl")) {
      const dash = f.indexOf("-");
      if (dash > 0) names.add(normalizePythonName(f.slice(0, dash)));
    } else {
      const m = /^(.+?)-(\d[^-]*)\.(?:tar\.gz|zip)$/.exec(f);
      if (m) names.add(normalizePythonName(m[1]!));
    }
  }
  return names;
}

function compareSemver(a: string, b: string): number {
  const [coreA, preA] = splitPre(a);
  const [coreB, preB] = splitPre(b);
  for (let i = 0; i < 3; i++) {
    const d = (coreA[i] ?? 0) - (coreB[i] ?? 0);
    if (d !== 0) return d;
  }
  if (preA === preB) return 0;
  if (preA === undefined) return 1; // a release ranks above its prereleases
  if (preB === undefined) return -1;
  return preA < preB ? -1 : 1;
}

function splitPre(v: string): [number[], string | undefined] {
  const noBuild = v.split("+")[0]!;
  const dash = noBuild.indexOf("-");
  const core = (dash === -1 ? noBuild : noBuild.slice(0, dash)).split(".").map(Number);
  return [core, dash === -1 ? undefined : noBuild.slice(dash + 1)];
}

const isRelease = (v: string) => !v.split("+")[0]!.includes("-");

/** The tarball `npm pack` would produce for a name: `@scope/name` → `scope-name`. */
const tarballBase = (name: string) => (name.startsWith("@") ? name.slice(1).replace("/", "-") : name);

/**
 * Checks the requested packages and says where they come from: the index when one is configured
 * for the language (specs are validated here, so nothing pip or npm could take as an option or a
 * URL ever reaches them), else the local directory. Undefined when nothing is requested.
 */
export function planPackages(language: SandboxLanguage, specs: string[], sources: PackageSources): PackagePlan | undefined {
  if (specs.length === 0) return undefined;
  if (language !== "shell" && sources.index?.[language]) {
    if (language === "python") parsePython(specs);
    else parseNpm(specs);
    return { from: "index", language, specs: [...specs] };
  }
  const install = resolvePackages(language, specs, sources);
  return install && { from: "local", install };
}

function parsePython(specs: string[]): string[] {
  return specs.map((s, i) => {
    const m = PYTHON_REQ.exec(s);
    if (!m) throw invalid(i, s, "python requirement (a name, optional [extras] and version specifiers such as numpy==1.26.4)");
    return m[1]!;
  });
}

function parseNpm(specs: string[]): Array<{ name: string; version: string | undefined }> {
  return specs.map((s, i) => {
    const m = NPM_SPEC.exec(s);
    if (!m) throw invalid(i, s, "npm package (a name or @scope/name, optionally @<exact version>)");
    return { name: m[1]!, version: m[2] };
  });
}

/**
 * Checks the requested packages and resolves them against the local package directories, to what
 * the in-sandbox installer gets. Returns undefined when nothing is requested.
 */
export function resolvePackages(language: SandboxLanguage, specs: string[], sources: PackageSources): PackageInstall | undefined {
  if (specs.length === 0) return undefined;
  if (language === "shell") {
    throw new HexrError(
      "sandbox.packages_unsupported",
      "packages can be installed for python and javascript executions, not shell",
      {
        kind: "invalid_argument",
      },
    );
  }
  if (language === "python") {
    const names = parsePython(specs);
    const dir = sources.pythonDir;
    if (!dir) {
      throw new HexrError(
        "sandbox.packages_not_configured",
        "no python package source is configured: set sandbox.packages.python.indexUrl to a package index or sandbox.packages.pythonDir to a directory of wheels",
        { kind: "failed_precondition" },
      );
    }
    const have = pythonDistributions(listDir(dir, "python"));
    for (const n of names) if (!have.has(normalizePythonName(n))) throw unavailable(n, "python", dir);
    return { language: "python", sourceDir: dir, items: [...specs], origin: "local" };
  }
  const dir = sources.npmDir;
  const parsed = parseNpm(specs);
  if (!dir) {
    throw new HexrError(
      "sandbox.packages_not_configured",
      "no npm package source is configured: set sandbox.packages.npm.registry to an npm registry or sandbox.packages.npmDir to a directory of npm tarballs",
      { kind: "failed_precondition" },
    );
  }
  const tarballs = new Map<string, Array<{ version: string; file: string }>>();
  for (const f of listDir(dir, "npm")) {
    const m = NPM_TARBALL.exec(f);
    if (!m) continue;
    const list = tarballs.get(m[1]!) ?? [];
    list.push({ version: m[2]!, file: f });
    tarballs.set(m[1]!, list);
  }
  const files = parsed.map(({ name, version }) => {
    const candidates = tarballs.get(tarballBase(name)) ?? [];
    const pick = version
      ? candidates.find((c) => c.version === version)
      : // Like npm's `latest`: the highest release, a prerelease only when there is nothing else.
        [...candidates].sort(
          (a, b) => Number(isRelease(b.version)) - Number(isRelease(a.version)) || compareSemver(b.version, a.version),
        )[0];
    if (!pick) throw unavailable(version ? `${name}@${version}` : name, "npm", dir);
    return pick.file;
  });
  return { language: "javascript", sourceDir: dir, items: files, origin: "local" };
}
