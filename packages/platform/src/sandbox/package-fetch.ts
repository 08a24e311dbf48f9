/**
 * Fetches an execution's packages from the operator's package index, on the host, before the
 * backend runs. The fetch runs in its own bubblewrap sandbox: /usr, a synthetic /etc and the
 * public CA certificates, a private /tmp, the execution's output directory and the download
 * cache, uid 65534 (host-side too when the platform is root), a seccomp filter, and a network
 * namespace of its own whose only way out is the egress proxy (see egress-proxy.ts): a tiny
 * forwarder inside listens on 127.0.0.1 and passes connections to the proxy's unix socket.
 *
 * No package code runs here: pip downloads wheels only (`--only-binary=:all:`, sdists would have
 * to be built), npm installs with `--ignore-scripts`. Python leaves a directory of wheels with
 * every dependency; npm leaves a complete `node_modules/` tree. The backend takes that directory
 * over. pip's and npm's own caches live under the data dir, so a package is downloaded once.
 */

import { HexrError } from "@hexr/core";
import { X509Certificate } from "node:crypto";
import { lookup } from "node:dns/promises";
import {
  chmodSync,
  chownSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { join } from "node:path";
import type { Logger } from "pino";
import type { CgroupLimits } from "./cgroup.js";
import { EgressProxy, hostOfUrl, isPrivateAddress, parseAllowedHost, type AllowedHost } from "./egress-proxy.js";
import { blockedAncestors, HostSandbox, type HostRunResult } from "./host-sandbox.js";
import { CachePruner } from "./package-cache.js";
import type { BackendCheck, PackageInstall } from "./types.js";

export interface PackageIndex {
  /** python: a PEP 503 simple index; javascript: an npm registry. */
  url: string;
  /** Further hosts (`host` or `host:port`) the installer may reach, e.g. files.pythonhosted.org. */
  allowHosts?: string[];
  /**
   * A private index's credentials, by the name of the platform environment variable that holds the
   * secret (read at each fetch): HTTP Basic for python, npm's `_authToken` (Bearer) for npm.
   */
  auth?: IndexAuth;
}

export type IndexAuth = { username: string; passwordEnv: string } | { tokenEnv: string };

export interface PackageFetcherOptions {
  python?: PackageIndex;
  npm?: PackageIndex;
  /**
   * pip's and npm's download caches go below (created; the leaves owned by the fetch user). The
   * fetch user must be able to reach it: bubblewrap resolves bind sources as that user.
   */
  cacheDir: string;
  /** The caches' size cap in bytes: after fetches, the least recently used files go (default: no cap). */
  cacheMaxBytes?: number;
  bwrapPath?: string;
  /** Host uid/gid of the fetch sandbox when the platform runs as root. */
  uid?: number;
  gid?: number;
  /** Where the runtime and per-execution output directories go (default: the OS temp dir). */
  runtimeParent?: string;
  /** The fetch's own cgroup (default 1 GiB, 256 processes, one core); rlimits only where cgroups cannot be had. */
  limits?: CgroupLimits;
  /** Where the credentials' environment variables are read (default: the platform's own environment). */
  env?: NodeJS.ProcessEnv;
  /** PEM certificates of CAs trusted for the indexes besides the public ones (a mirror behind an internal CA). */
  caFile?: string;
  log?: Logger;
}

export interface FetchRequest {
  /** The execution's id (names its output directory). */
  id: string;
  language: "python" | "javascript";
  /** Requirement specs, already validated by packages.ts (no URLs, no options). */
  specs: string[];
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Anything that turns a package request into a directory the backend installs from. */
export interface PackageFetch {
  fetch(req: FetchRequest): Promise<PackageInstall>;
}

/** The port the forwarder listens on inside the fetch sandbox's own network namespace. */
const PROXY_PORT = 3128;
const PATHS = {
  out: "/out",
  cache: "/cache",
  proxySocket: "/run/hexr/proxy.sock",
  scripts: "/run/hexr/fetch",
  /** pip's debug log (`--log`): what it says of an index's HTTP errors, which it otherwise keeps to itself. */
  log: "/run/hexr/log",
} as const;
/** How much of pip's debug log a failure is explained from. */
const PIP_LOG_TAIL = 256 * 1024;

/** Python: forward 127.0.0.1:PORT to the proxy socket on threads, run pip, exit with its status. */
const FETCH_PY = `import socket, subprocess, sys, threading
port, sock_path, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
def serve(srv):
    while True:
        c, _ = srv.accept()
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect(sock_path)
        except OSError:
            c.close()
            continue
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
srv = socket.socket()
srv.bind(("127.0.0.1", port))
srv.listen(64)
threading.Thread(target=serve, args=(srv,), daemon=True).start()
sys.exit(subprocess.call(cmd))
`;

/** Node: the same forwarder for npm, so javascript needs no python. */
const FETCH_MJS = `import { createServer, connect } from "node:net";
import { spawn } from "node:child_process";
const [port, sockPath, ...cmd] = process.argv.slice(2);
const srv = createServer((c) => {
  const u = connect(sockPath);
  c.on("error", () => u.destroy());
  u.on("error", () => c.destroy());
  c.pipe(u).pipe(c);
});
srv.listen(Number(port), "127.0.0.1", () => {
  const child = spawn(cmd[0], cmd.slice(1), { stdio: "inherit" });
  child.on("exit", (code, sig) => process.exit(code ?? (sig ? 128 : 1)));
});
`;

/** What the fetcher keeps in its sandbox's runtime directory. */
interface Runtime {
  scripts: string;
  sockets: string;
}

/** The configured CAs alone (for node's NODE_EXTRA_CA_CERTS) and with the public ones (pip's --cert), in the scripts directory. */
const CA_FILES = { extra: "ca-extra.pem", bundle: "ca-bundle.pem" } as const;

/** The host's public CA bundle (Debian's, which pip uses by default), else node's own roots. */
function publicCaBundle(): string {
  try {
    return readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8").replace(/\n?$/, "\n");
  } catch {
    return rootCertificates.join("\n") + "\n";
  }
}

/** The variable npm's user config reads the registry token from, inside the fetch sandbox. */
const NPM_TOKEN_VAR = "HEXR_NPM_TOKEN";

/**
 * Strips secrets from text meant for callers and logs: the userinfo of URLs (a private mirror's
 * credentials) and the given secret values, as written and percent-encoded.
 */
function redactor(urls: string[], values: string[] = []): (text: string) => string {
  const secrets: string[] = [];
  for (const u of urls) {
    try {
      const p = new URL(u);
      for (const s of [p.password, p.username, decodeURIComponent(p.password), decodeURIComponent(p.username)]) {
        if (s.length >= 3) secrets.push(s);
      }
    } catch {
      // validated by the config
    }
  }
  for (const v of values) secrets.push(v, encodeURIComponent(v));
  // Longest first, so a secret is not left half-shown by a shorter one that it contains.
  const longestFirst = secrets.filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
  return (text) => longestFirst.reduce((t, s) => t.split(s).join("****"), text);
}

/** npm's key for a registry's settings in .npmrc: the URL without its scheme, ending in a slash. */
function nerfDart(registry: string): string {
  const u = new URL(registry);
  return `//${u.host}${u.pathname.endsWith("/") ? u.pathname : `${u.pathname}/`}`;
}

/** The project name of a requirement as pip echoes it (`numpy==1.26.4` → `numpy`). */
const pythonName = (req: string) => /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(req)?.[0] ?? req;

/** The index URL without credentials, for messages. */
function publicUrl(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  return u.href;
}

export class PackageFetcher implements PackageFetch {
  private runtime: Runtime | undefined;
  private ca: { pem: string | undefined } | undefined;
  private inspections = 0;
  private readonly redact: (text: string) => string;
  private readonly sandbox: HostSandbox;
  private readonly runAs: { uid: number; gid: number } | undefined;
  private readonly pruner: CachePruner | undefined;

  constructor(private readonly opts: PackageFetcherOptions) {
    this.redact = redactor([opts.python?.url, opts.npm?.url].filter((u): u is string => !!u));
    this.sandbox = new HostSandbox({
      prefix: "hexr-pkgfetch-",
      purpose: "package fetch",
      ...(opts.bwrapPath ? { bwrapPath: opts.bwrapPath } : {}),
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
      ...(opts.runtimeParent ? { runtimeParent: opts.runtimeParent } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
    this.runAs = this.sandbox.runAs;
    if (opts.cacheMaxBytes !== undefined) {
      this.pruner = new CachePruner(
        opts.cacheDir,
        opts.cacheMaxBytes,
        (r) =>
          opts.log?.info(
            { dir: opts.cacheDir, beforeMb: mb(r.before), afterMb: mb(r.after), removedFiles: r.removedFiles },
            "package cache pruned",
          ),
        (err) => opts.log?.warn({ err, dir: opts.cacheDir }, "cannot prune the package cache"),
      );
    }
  }

  /** Removes the runtime directory (outputs not yet taken over by a backend go with it). */
  async stop(): Promise<void> {
    this.runtime = undefined;
    await this.pruner?.idle();
    await this.sandbox.stop();
  }

  /**
   * What `hexr sandbox doctor` reports for package installs: each configured index answers from
   * this host (a HEAD of the simple index; npm's `/-/ping`), and the fetch user can reach the cache
   * directory (bubblewrap binds it as that user, so every directory above it must let others through).
   */
  async check(timeoutMs = 5000): Promise<BackendCheck[]> {
    const checks: BackendCheck[] = [];
    let extraCa: string | undefined;
    try {
      extraCa = this.extraCa();
    } catch (err) {
      checks.push({ name: "packages:ca", ok: false, severity: "warning", detail: (err as Error).message });
    }
    const indexes: Array<[string, PackageIndex | undefined]> = [
      ["python", this.opts.python],
      ["npm", this.opts.npm],
    ];
    for (const [name, index] of indexes) {
      if (!index) continue;
      const language = name === "python" ? "python" : "javascript";
      const setting = name === "python" ? "sandbox.packages.python.indexUrl" : "sandbox.packages.npm.registry";
      const url = new URL(name === "python" ? index.url : `${index.url.replace(/\/+$/, "")}/-/ping`);
      const { host, ports } = hostOfUrl(index.url);
      let headers: Record<string, string>;
      try {
        headers = this.authHeaders(language, index, url);
      } catch (err) {
        checks.push({ name: `packages:${name}`, ok: false, severity: "warning", detail: (err as Error).message });
        continue;
      }
      url.username = "";
      url.password = "";
      const started = performance.now();
      try {
        const status = await probe(url, name === "python" ? "HEAD" : "GET", headers, extraCa, timeoutMs);
        const ms = Math.round(performance.now() - started);
        const ok = status < 400;
        const auth = name === "python" ? "sandbox.packages.python.username and .passwordEnv" : "sandbox.packages.npm.tokenEnv";
        checks.push({
          name: `packages:${name}`,
          ok,
          severity: "warning",
          detail: ok
            ? `${host}:${ports[0]} answers (HTTP ${status} in ${ms} ms)`
            : status === 401 || status === 403
              ? `${host}:${ports[0]} answers HTTP ${status}: ${index.auth ? "it refused the credentials of" : "a private index needs"} ${auth}`
              : `${host}:${ports[0]} answers HTTP ${status}: is ${setting} the index's URL?`,
        });
      } catch (err) {
        const e = err as Error & { code?: string };
        const untrusted = TLS_TRUST_ERRORS.test(`${e.code ?? ""} ${e.message}`);
        checks.push({
          name: `packages:${name}`,
          ok: false,
          severity: "warning",
          detail: this.redact(
            untrusted
              ? `${host}:${ports[0]}'s TLS certificate is not trusted (${e.code ?? e.message}): if your own CA signed it, set sandbox.packages.caFile to its certificate`
              : `cannot reach ${host}:${ports[0]} from this host (${e.name === "TimeoutError" ? `no answer in ${timeoutMs} ms` : e.message}): executions with ${name} packages will fail; check ${setting} and the host's network`,
          ),
        });
      }
    }
    if (this.opts.python || this.opts.npm) checks.push(this.cacheCheck());
    return checks;
  }

  /** Whether the fetch user can reach the cache directory (the nearest existing ancestor, when it is not made yet). */
  private cacheCheck(): BackendCheck {
    const dir = this.opts.cacheDir;
    // Ancestors not made yet are skipped: prepare() creates them.
    const blocked = this.runAs ? blockedAncestors(dir, this.runAs) : [];
    return blocked.length
      ? {
          name: "packages:cache",
          ok: false,
          severity: "warning",
          detail: `uid ${this.runAs!.uid} cannot pass through ${blocked.join(", ")} to reach ${dir}: set sandbox.packages.cacheDir elsewhere (e.g. /var/cache/hexr/packages)`,
        }
      : {
          name: "packages:cache",
          ok: true,
          severity: "warning",
          detail: `${dir} (${this.opts.cacheMaxBytes !== undefined ? `kept within ${mb(this.opts.cacheMaxBytes)} MiB` : "no size cap"})`,
        };
  }

  async fetch(req: FetchRequest): Promise<PackageInstall> {
    const index = req.language === "python" ? this.opts.python : this.opts.npm;
    if (!index) {
      throw new HexrError("sandbox.packages_not_configured", `no ${req.language} package index is configured`, {
        kind: "failed_precondition",
      });
    }
    const secret = this.secretOf(req.language, index);
    const redact = secret === undefined ? this.redact : redactor([index.url], [secret]);
    const rt = this.prepare();
    const started = Date.now();
    const out = this.sandbox.workDir(req.id);
    const logDir = this.sandbox.workDir(`${req.id}.log`);
    const indexHost = hostOfUrl(index.url);
    const proxy = await this.startProxy(rt, req.id, index);
    let ok = false;
    try {
      const { argv, env } = this.command(req, index, secret);
      const run = await this.runSandbox(rt, req, argv, out, logDir, proxy, env, redact);
      if (run.timedOut) {
        throw new HexrError(
          "sandbox.package_install_timeout",
          `fetching packages from ${indexHost.host} took longer than ${Math.round(req.timeoutMs / 100) / 10} s`,
          { kind: "timeout" },
        );
      }
      if (run.aborted) throw new HexrError("sandbox.aborted", "the execution was cancelled", { kind: "unavailable" });
      if (run.oomKilled) {
        throw new HexrError("sandbox.package_install_failed", "fetching packages ran out of memory (the fetch's cgroup limit)", {
          kind: "failed_precondition",
        });
      }
      if (run.exitCode !== 0) {
        throw this.failure(
          req,
          index,
          proxy,
          run.log,
          secret !== undefined,
          redact(fileTail(join(logDir, "pip.log"), PIP_LOG_TAIL)),
        );
      }
      ok = true;
      this.opts.log?.info(
        { id: req.id, language: req.language, packages: req.specs.length, ms: Date.now() - started },
        "packages fetched",
      );
      return { language: req.language, sourceDir: out, items: [...req.specs], origin: "fetched" };
    } finally {
      await proxy.close();
      if (!ok) rmSync(out, { recursive: true, force: true });
      rmSync(logDir, { recursive: true, force: true });
      this.pruner?.poke();
    }
  }

  /**
   * The certificates of `caFile` (PEM), read and checked once; undefined when none is configured.
   * `sandbox.packages_ca_invalid` when the file cannot be read or holds no certificate.
   */
  private extraCa(): string | undefined {
    if (this.ca) return this.ca.pem;
    const file = this.opts.caFile;
    if (file === undefined) return (this.ca = { pem: undefined }).pem;
    const invalid = (why: string) =>
      new HexrError(
        "sandbox.packages_ca_invalid",
        `sandbox.packages.caFile ${file} ${why}: it should hold the CA's certificate(s) in PEM`,
        {
          kind: "failed_precondition",
        },
      );
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw invalid(`cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw invalid("holds no certificate");
    for (const b of blocks) {
      try {
        new X509Certificate(b);
      } catch {
        throw invalid("holds a certificate that cannot be parsed");
      }
    }
    return (this.ca = { pem: blocks.join("\n") + "\n" }).pem;
  }

  /** The Authorization header a request to a private index carries (the URL's own userinfo, or the configured credentials). */
  private authHeaders(language: "python" | "javascript", index: PackageIndex, url: URL): Record<string, string> {
    const secret = this.secretOf(language, index); // throws when the variable is not set
    const basic = (user: string, pass: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`,
    });
    if (secret !== undefined && index.auth) {
      return "username" in index.auth ? basic(index.auth.username, secret) : { authorization: `Bearer ${secret}` };
    }
    if (url.username || url.password) return basic(decodeURIComponent(url.username), decodeURIComponent(url.password));
    return {};
  }

  /** The private index's secret from the environment variable the config names (undefined for a public index). */
  private secretOf(language: "python" | "javascript", index: PackageIndex): string | undefined {
    if (!index.auth) return undefined;
    const name = "passwordEnv" in index.auth ? index.auth.passwordEnv : index.auth.tokenEnv;
    const value = (this.opts.env ?? process.env)[name];
    if (!value) {
      const setting = language === "python" ? "sandbox.packages.python.passwordEnv" : "sandbox.packages.npm.tokenEnv";
      throw new HexrError(
        "sandbox.packages_credentials_missing",
        `${setting} names the environment variable ${name}, which is not set in the platform's environment: set it to the index's ${language === "python" ? "password or token" : "auth token"} and restart the platform`,
        { kind: "failed_precondition" },
      );
    }
    return value;
  }

  /** Private addresses the index itself is on (a mirror on the local network, or a test index on 127.0.0.1). */
  private async indexAddresses(h: AllowedHost): Promise<Set<string>> {
    let addrs: string[] = [];
    try {
      addrs = isIP(h.host) ? [h.host] : (await lookup(h.host, { all: true })).map((a) => a.address);
    } catch {
      // unresolvable: the proxy reports it when pip or npm asks
    }
    return new Set(addrs.filter(isPrivateAddress));
  }

  /** The fetch scripts and the proxies' socket directory in the sandbox's runtime directory; the cache directories. */
  private prepare(): Runtime {
    if (this.runtime) return this.runtime;
    const extraCa = this.extraCa(); // a bad caFile fails here, before anything is made
    const dir = this.sandbox.dir;
    const scripts = join(dir, "scripts");
    mkdirSync(scripts, { mode: 0o755 });
    writeFileSync(join(scripts, "fetch.py"), FETCH_PY, { mode: 0o644 });
    writeFileSync(join(scripts, "fetch.mjs"), FETCH_MJS, { mode: 0o644 });
    // npm's user config: a private registry's token, expanded by npm from the fetch's environment (never written here).
    const npmAuth = this.opts.npm?.auth ? `${nerfDart(this.opts.npm.url)}:_authToken=\${${NPM_TOKEN_VAR}}\n` : "";
    writeFileSync(join(scripts, "npmrc"), npmAuth, { mode: 0o644 });
    if (extraCa) {
      // node (npm) adds NODE_EXTRA_CA_CERTS to its own roots; pip's --cert replaces its bundle, so it gets the public CAs too.
      writeFileSync(join(scripts, CA_FILES.extra), extraCa, { mode: 0o644 });
      writeFileSync(join(scripts, CA_FILES.bundle), publicCaBundle() + extraCa, { mode: 0o644 });
    }
    const sockets = join(dir, "sockets");
    mkdirSync(sockets, { mode: 0o755 });
    for (const sub of ["pip", "npm"]) {
      const d = join(this.opts.cacheDir, sub);
      mkdirSync(d, { recursive: true, mode: 0o755 });
      chmodSync(d, 0o700);
      if (this.runAs) chownSync(d, this.runAs.uid, this.runAs.gid);
    }
    this.runtime = { scripts, sockets };
    return this.runtime;
  }

  /**
   * The installer's command line and environment inside the sandbox. Credentials go in the
   * environment (readable only by the fetch's own user), never on a command line the host's `ps` shows.
   */
  private command(
    req: FetchRequest,
    index: PackageIndex,
    secret: string | undefined,
  ): { argv: string[]; env: Record<string, string> } {
    const proxy = `http://127.0.0.1:${PROXY_PORT}`;
    if (req.language === "python") {
      const indexUrl = new URL(index.url);
      if (secret !== undefined && index.auth && "username" in index.auth) {
        indexUrl.username = index.auth.username;
        indexUrl.password = secret;
      }
      // Not --isolated: that would ignore PIP_INDEX_URL. The sandbox's environment is only what is
      // set here, and its config files would be in the synthetic /etc and the private, empty HOME.
      const argv = PackageFetcher.forwarded("python", [
        "/usr/bin/python3",
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--dest",
        PATHS.out,
        "--log",
        `${PATHS.log}/pip.log`,
        ...(this.extraCa() ? ["--cert", `${PATHS.scripts}/${CA_FILES.bundle}`] : []),
        // pip does not use an http:// index (nor cache from it) unless it is trusted; the operator configured it.
        ...(new URL(index.url).protocol === "http:" ? ["--trusted-host", new URL(index.url).host] : []),
        "--proxy",
        proxy,
        "--cache-dir",
        PATHS.cache,
        "--retries",
        "1",
        "--timeout",
        "30",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--",
        ...req.specs,
      ]);
      return { argv, env: { PIP_INDEX_URL: indexUrl.href } };
    }
    const argv = PackageFetcher.forwarded("javascript", [
      "/usr/bin/node",
      "/usr/lib/node_modules/npm/bin/npm-cli.js",
      "install",
      "--prefix",
      PATHS.out,
      "--registry",
      index.url,
      "--proxy",
      proxy,
      "--https-proxy",
      proxy,
      "--noproxy",
      "",
      "--cache",
      PATHS.cache,
      "--userconfig",
      `${PATHS.scripts}/npmrc`,
      "--globalconfig",
      "/tmp/.npmrc-global",
      "--ignore-scripts",
      "--no-save",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--no-update-notifier",
      "--logs-max",
      "0",
      "--fetch-retries",
      "1",
      // npm waits 10 s before its retry by default (pip a fraction of a second): a failing index now costs ~2 s.
      "--fetch-retry-mintimeout",
      "2000",
      "--fetch-retry-maxtimeout",
      "10000",
      "--loglevel",
      "error",
      "--",
      ...req.specs,
    ]);
    return {
      argv,
      env: {
        ...(secret !== undefined ? { [NPM_TOKEN_VAR]: secret } : {}),
        ...(this.extraCa() ? { NODE_EXTRA_CA_CERTS: `${PATHS.scripts}/${CA_FILES.extra}` } : {}),
      },
    };
  }

  /**
   * Runs `command` in a fetch sandbox set up exactly as for `language` (with the egress proxy at
   * 127.0.0.1:3128 inside when `command` starts with the forwarder): for the confinement tests.
   */
  async inspect(
    language: "python" | "javascript",
    command: string[],
    timeoutMs = 30_000,
  ): Promise<{ exitCode: number | null; oomKilled: boolean; log: string; proxy: EgressProxy }> {
    const index = (language === "python" ? this.opts.python : this.opts.npm) ?? { url: "http://127.0.0.1:9/" };
    const rt = this.prepare();
    const req: FetchRequest = { id: `inspect-${++this.inspections}`, language, specs: [], timeoutMs };
    const out = this.sandbox.workDir(req.id);
    const logDir = this.sandbox.workDir(`${req.id}.log`);
    const proxy = await this.startProxy(rt, req.id, index);
    try {
      const run = await this.runSandbox(rt, req, command, out, logDir, proxy);
      return { exitCode: run.exitCode, oomKilled: run.oomKilled, log: run.log, proxy };
    } finally {
      await proxy.close();
      for (const d of [out, logDir]) rmSync(d, { recursive: true, force: true });
    }
  }

  /** The forwarder in front of a command: 127.0.0.1:3128 inside leads to the egress proxy. */
  static forwarded(language: "python" | "javascript", command: string[]): string[] {
    const script =
      language === "python" ? ["/usr/bin/python3", `${PATHS.scripts}/fetch.py`] : ["/usr/bin/node", `${PATHS.scripts}/fetch.mjs`];
    return [...script, String(PROXY_PORT), PATHS.proxySocket, ...command];
  }

  private async startProxy(rt: Runtime, id: string, index: PackageIndex): Promise<EgressProxy> {
    const indexHost = hostOfUrl(index.url);
    return EgressProxy.start({
      socketPath: join(rt.sockets, `${id}.sock`),
      allow: [indexHost, ...(index.allowHosts ?? []).map(parseAllowedHost)],
      privateAllowed: await this.indexAddresses(indexHost),
      ...(this.runAs ? { owner: this.runAs } : {}),
      ...(this.opts.log ? { log: this.opts.log.child({ fetch: id }) } : {}),
    });
  }

  /** `command` in the fetch sandbox: the scripts, the proxy's socket, the output directory and the language's cache bound in. */
  private async runSandbox(
    rt: Runtime,
    req: FetchRequest,
    command: string[],
    out: string,
    logDir: string,
    proxy: EgressProxy,
    env: Record<string, string> = {},
    redact = this.redact,
  ): Promise<HostRunResult> {
    const run = await this.sandbox.run({
      command,
      env,
      binds: [
        { source: rt.scripts, dest: PATHS.scripts },
        { source: proxy.socketPath, dest: PATHS.proxySocket, writable: true },
        { source: out, dest: PATHS.out, writable: true },
        { source: logDir, dest: PATHS.log, writable: true },
        { source: join(this.opts.cacheDir, req.language === "python" ? "pip" : "npm"), dest: PATHS.cache, writable: true },
      ],
      // Public CA certificates, for an https index (Debian's pip and OpenSSL read them at /etc/ssl/certs).
      caCertificates: true,
      timeoutMs: req.timeoutMs,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    return { ...run, log: redact(run.log) };
  }

  /** A failed fetch as the caller should see it: which host was refused, which package is missing, or the installer's words. */
  /** `debugLog`: pip's own log file, where it notes the index's HTTP errors (redacted like `log`). */
  private failure(
    req: FetchRequest,
    index: PackageIndex,
    proxy: EgressProxy,
    log: string,
    withCredentials: boolean,
    debugLog: string,
  ): HexrError {
    const setting = req.language === "python" ? "sandbox.packages.python" : "sandbox.packages.npm";
    const refused = proxy.refusals[0];
    if (refused) {
      return new HexrError(
        "sandbox.package_index_unreachable",
        `the package installer was refused access to ${refused.host}:${refused.port} (${refused.reason}); only the index ` +
          `${publicUrl(index.url)} and ${setting}.allowHosts may be reached`,
        { kind: "unavailable", details: { host: refused.host, port: refused.port } },
      );
    }
    const failed = proxy.failures[0];
    if (failed) {
      return new HexrError(
        "sandbox.package_index_unreachable",
        `the package index cannot be reached: ${failed.host}:${failed.port}: ${failed.reason}`,
        { kind: "unavailable", details: { host: failed.host, port: failed.port } },
      );
    }
    if (TLS_TRUST_ERRORS.test(`${log}\n${debugLog}`)) {
      return new HexrError(
        "sandbox.package_index_untrusted",
        this.opts.caFile
          ? `the package index ${publicUrl(index.url)} has a TLS certificate that neither the public CAs nor sandbox.packages.caFile vouch for`
          : `the package index ${publicUrl(index.url)} has a TLS certificate no public CA vouches for: if your own CA signed it, set sandbox.packages.caFile to the CA's certificate (PEM)`,
        { kind: "failed_precondition" },
      );
    }
    // pip: "401 Client Error: Unauthorized for url"; npm: "code E401" / "403 Forbidden - GET …".
    const denied = /\b(401|403) Client Error\b|\bcode E(401|403)\b|\b(401|403) (Unauthorized|Forbidden)\b/.exec(
      `${log}\n${debugLog}`,
    );
    if (denied) {
      const status = Number(denied[1] ?? denied[2] ?? denied[3]);
      const what = req.language === "python" ? `${setting}.username and .passwordEnv` : `${setting}.tokenEnv`;
      return new HexrError(
        "sandbox.package_index_unauthorized",
        withCredentials
          ? `the package index ${publicUrl(index.url)} refused the credentials (HTTP ${status}): check the secret in the environment variable ${what} names, and that it may read these packages`
          : `the package index ${publicUrl(index.url)} wants credentials (HTTP ${status}): set ${what}`,
        { kind: "failed_precondition", details: { status } },
      );
    }
    const missing =
      req.language === "python"
        ? /No matching distribution found for ([^\s]+)/.exec(log)?.[1]
        : (/No matching version found for (\S+?)\.?\s/.exec(log)?.[1] ??
          /'((?:@[^/'\s]+\/)?[^@'\s]+)@[^']*' (?:is not in this registry|could not be found)/.exec(log)?.[1]);
    if (missing) {
      const hint =
        req.language === "python" ? " (or it has no wheel for this platform: source distributions are never built)" : "";
      return new HexrError(
        "sandbox.package_unavailable",
        `package '${missing}' cannot be had from the package index ${publicUrl(index.url)}${hint}`,
        // As for a local directory: the python project name, the npm name with the version asked for.
        { kind: "failed_precondition", details: { package: req.language === "python" ? pythonName(missing) : missing } },
      );
    }
    const tail = log.trim().split("\n").slice(-8).join("\n").slice(-2000);
    return new HexrError("sandbox.package_install_failed", `fetching packages failed:\n${tail}`, { kind: "failed_precondition" });
  }
}

/** What pip, npm and node say when a certificate chain does not lead to a trusted CA. */
const TLS_TRUST_ERRORS =
  /CERTIFICATE_VERIFY_FAILED|certificate verify failed|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|UNABLE_TO_VERIFY_LEAF_SIGNATURE|self[- ]signed certificate/;

/** The HTTP status of one request to `url` (the doctor's probe), trusting the public CAs and `extraCa`. */
function probe(
  url: URL,
  method: string,
  headers: Record<string, string>,
  extraCa: string | undefined,
  timeoutMs: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const opts = { method, headers, timeout: timeoutMs, ...(extraCa ? { ca: [...rootCertificates, extraCa] } : {}) };
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, opts, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("timeout", () => {
      const e = new Error(`no answer in ${timeoutMs} ms`);
      e.name = "TimeoutError";
      req.destroy(e);
    });
    req.on("error", reject);
    req.end();
  });
}

/** The last `max` bytes of a file ("" when there is none). */
function fileTail(path: string, max: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(size, max));
    readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function mb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}
