import { HexrError } from "@hexr/core";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { formatPath } from "../http/problem.js";
import { PlatformConfig } from "./schema.js";

type Source = "flag" | "env" | "file" | "default";

/** Environment variables the platform reads, and the dotted config key each sets. */
export const ENV_KEYS: Record<string, { key: string; type: "string" | "number" }> = {
  HEXR_HOME: { key: "dataDir", type: "string" },
  HEXR_HOST: { key: "host", type: "string" },
  HEXR_PORT: { key: "port", type: "number" },
  HEXR_DATABASE_URL: { key: "databaseUrl", type: "string" },
  HEXR_TRUST_DOMAIN: { key: "trustDomain", type: "string" },
  HEXR_PUBLIC_URL: { key: "publicUrl", type: "string" },
  HEXR_LOG_LEVEL: { key: "log.level", type: "string" },
  HEXR_LOG_FORMAT: { key: "log.format", type: "string" },
  HEXR_BODY_LIMIT_BYTES: { key: "http.bodyLimitBytes", type: "number" },
};

export const CONFIG_FILE_NAMES = ["hexr.config.json", "hexr.config.yaml", "hexr.config.yml"];

export interface ResolveOptions {
  /** Dotted keys from command-line flags, e.g. `{ port: 8080, "log.level": "debug" }`. */
  flags?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Explicit config file (`--config`); must exist. */
  configFile?: string;
}

export interface ResolvedConfig {
  config: PlatformConfig;
  /** Where each explicitly set key came from. */
  sources: Record<string, Source>;
  file: string | undefined;
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split(".");
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== "object" || next === null || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function flatten(obj: unknown, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
  if (typeof obj === "object" && obj !== null && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = obj;
  return out;
}

function configError(message: string): HexrError {
  return new HexrError("config.invalid", message, { kind: "invalid_argument" });
}

export function findConfigFile(cwd: string, explicit?: string): string | undefined {
  if (explicit) {
    const p = isAbsolute(explicit) ? explicit : resolve(cwd, explicit);
    if (!existsSync(p)) throw configError(`config file ${p} does not exist`);
    return p;
  }
  for (const name of CONFIG_FILE_NAMES) {
    const p = resolve(cwd, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function readConfigFile(path: string): Record<string, unknown> {
  const text = readFileSync(path, "utf8");
  let parsed: unknown;
  try {
    parsed = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw configError(`${path} is not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) throw configError(`${path} must contain an object at the top level`);
  return parsed as Record<string, unknown>;
}

/** flags > HEXR_* env > hexr.config.{json,yaml} > defaults; unknown keys and bad values name the dotted path. */
export function resolveConfig(opts: ResolveOptions = {}): ResolvedConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const file = findConfigFile(cwd, opts.configFile ?? env["HEXR_CONFIG"]);
  const merged: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};

  if (file) {
    for (const [k, v] of Object.entries(flatten(readConfigFile(file)))) {
      setPath(merged, k, v);
      sources[k] = "file";
    }
  }
  for (const [name, { key, type }] of Object.entries(ENV_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    let value: unknown = raw;
    if (type === "number") {
      value = Number(raw);
      if (!Number.isFinite(value)) throw configError(`${key} (from ${name}): expected a number, got ${JSON.stringify(raw)}`);
    }
    setPath(merged, key, value);
    sources[key] = "env";
  }
  for (const [k, v] of Object.entries(opts.flags ?? {})) {
    if (v === undefined) continue;
    setPath(merged, k, v);
    sources[k] = "flag";
  }
  if (merged["dataDir"] === undefined) merged["dataDir"] = resolve(homedir(), ".hexr");
  else merged["dataDir"] = resolve(cwd, String(merged["dataDir"]));

  const r = PlatformConfig.safeParse(merged);
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const keys = i.code === "unrecognized_keys" ? (i as { keys: string[] }).keys : [undefined];
      return keys
        .map((k) => {
          const path = formatPath([...(i.path as PropertyKey[]), ...(k === undefined ? [] : [k])]);
          const from = sources[path] ? ` (from ${sourceLabel(sources[path]!, path, file)})` : file && k ? ` (in ${file})` : "";
          const msg = k !== undefined ? "unknown key" : i.message;
          return `${path}${from}: ${msg}`;
        })
        .join("\n");
    });
    throw configError(`invalid configuration:\n${lines.join("\n")}`);
  }
  return { config: r.data, sources, file };
}

function sourceLabel(source: Source, key: string, file: string | undefined): string {
  if (source === "env") return Object.entries(ENV_KEYS).find(([, v]) => v.key === key)?.[0] ?? "env";
  if (source === "file") return file ?? "config file";
  if (source === "flag") return `--${key.replace(/\./g, "-").replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`;
  return source;
}
