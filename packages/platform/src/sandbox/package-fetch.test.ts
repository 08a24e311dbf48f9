import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SandboxConfig } from "./config.js";
import { packageFetcherFrom } from "./module.js";
import { PackageFetcher, type PackageFetcherOptions } from "./package-fetch.js";
import {
  buildNpmTarball,
  buildWheel,
  makeTestTls,
  startNpmRegistry,
  startSimpleIndex,
  worldReadableTempDir,
  type TestIndex,
} from "./test-support/packages.js";

/** The error a promise rejects with (undefined if it resolves). */
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );

/** Fetchers on `base()` (read when one is made: the indexes start in beforeAll) plus overrides, all stopped by `stopAll`. */
function fetcherMaker(base: () => PackageFetcherOptions) {
  const made: PackageFetcher[] = [];
  const adopt = (f: PackageFetcher) => (made.push(f), f);
  return {
    make: (opts: Partial<PackageFetcherOptions> = {}) => adopt(new PackageFetcher({ ...base(), ...opts })),
    adopt,
    stopAll: () => Promise.all(made.map((f) => f.stop())),
  };
}

let seq = 0;
const id = () => `f${process.pid}-${++seq}`;

describe("package fetch from an index, confined", () => {
  const wheels = worldReadableTempDir("hexr-idx-wheels-");
  const tarballs = worldReadableTempDir("hexr-idx-npm-");
  // Stands in for the platform data dir: the fetch sandbox must not see anything of it.
  const dataDir = mkdtempSync(join(tmpdir(), "hexr-fetch-data-"));
  const cacheDir = worldReadableTempDir("hexr-fetch-cache-");
  const adminKey = "hexr_admin_" + "k".repeat(32);
  let pyIndex: TestIndex;
  let npmReg: TestIndex;
  let stray: TestIndex;
  let fetcher: PackageFetcher;
  const outputs: string[] = [];

  beforeAll(async () => {
    writeFileSync(join(dataDir, "admin.key"), adminKey, { mode: 0o600 });
    buildWheel(wheels, { name: "hexr-top", module: "from hexr_dep import DEP\nTOP = 'top+' + DEP\n", requires: ["hexr-dep"] });
    buildWheel(wheels, { name: "hexr-dep", module: "DEP = 'dep'\n" });
    // Served by another host, which the index page links to: the proxy must not let pip reach it.
    buildWheel(wheels, { name: "hexr-elsewhere", module: "X = 1\n" });
    stray = await startSimpleIndex([join(wheels, "hexr_elsewhere-1.0.0-py3-none-any.whl")]);
    pyIndex = await startSimpleIndex(
      [join(wheels, "hexr_top-1.0.0-py3-none-any.whl"), join(wheels, "hexr_dep-1.0.0-py3-none-any.whl")],
      // A page that points at a host the operator did not allow.
      { extraLinks: { "hexr-elsewhere": [`http://localhost:${stray.port}/files/hexr_elsewhere-1.0.0-py3-none-any.whl`] } },
    );
    buildNpmTarball(tarballs, { name: "hexr-npm-dep", indexJs: "module.exports = 'npm-dep';\n" });
    buildNpmTarball(tarballs, {
      name: "hexr-npm-top",
      version: "2.1.0",
      indexJs: "module.exports = 'npm-top+' + require('hexr-npm-dep');\n",
      dependencies: { "hexr-npm-dep": "^1.0.0" },
    });
    npmReg = await startNpmRegistry(readdirSync(tarballs).map((f) => join(tarballs, f)));
    fetcher = new PackageFetcher({
      python: { url: `${pyIndex.origin}/simple/` },
      npm: { url: npmReg.origin },
      cacheDir,
    });
  });

  afterAll(async () => {
    await fetcher.stop();
    await Promise.all([pyIndex?.close(), npmReg?.close(), stray?.close()]);
    for (const d of [wheels, tarballs, dataDir, cacheDir, ...outputs]) rmSync(d, { recursive: true, force: true });
  });

  it("downloads a python package with its dependency as wheels; the second time from the cache", async () => {
    const first = await fetcher.fetch({ id: id(), language: "python", specs: ["hexr-top"], timeoutMs: 60_000 });
    outputs.push(first.sourceDir);
    expect(first).toMatchObject({ language: "python", items: ["hexr-top"], origin: "fetched" });
    expect(readdirSync(first.sourceDir).sort()).toEqual(["hexr_dep-1.0.0-py3-none-any.whl", "hexr_top-1.0.0-py3-none-any.whl"]);
    // Written by the fetch sandbox's user: 65534 on the host too when the platform runs as root.
    const owner = process.getuid?.() === 0 ? 65534 : process.getuid?.();
    expect(statSync(join(first.sourceDir, "hexr_dep-1.0.0-py3-none-any.whl")).uid).toBe(owner);
    const fileRequests = () => pyIndex.requests.filter((r) => r.startsWith("/files/")).length;
    expect(fileRequests()).toBe(2);

    const second = await fetcher.fetch({ id: id(), language: "python", specs: ["hexr-top==1.0.0"], timeoutMs: 60_000 });
    outputs.push(second.sourceDir);
    expect(readdirSync(second.sourceDir).sort()).toEqual(readdirSync(first.sourceDir).sort());
    expect(second.sourceDir).not.toBe(first.sourceDir);
    expect(fileRequests()).toBe(2); // the wheels came from the cache; only the index pages were asked again
  });

  it("checks for the doctor that each index answers and the fetch user can reach the cache", async () => {
    const checks = await fetcher.check();
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ["packages:python", true],
      ["packages:npm", true],
      ["packages:cache", true],
    ]);
    expect(checks[0]!.detail).toMatch(/^127\.0\.0\.1:\d+ answers \(HTTP 200 in \d+ ms\)$/);

    const hidden = mkdtempSync(join(tmpdir(), "hexr-fetch-hidden-")); // 0700, as /root is
    const down = new PackageFetcher({
      python: { url: "http://user:s3cr3t-pass@127.0.0.1:9/simple/" },
      npm: { url: `${npmReg.origin}/nested/path` },
      cacheDir: join(hidden, "cache"),
    });
    try {
      const [py, npm, cache] = await down.check(2000);
      expect(py).toMatchObject({ name: "packages:python", ok: false, severity: "warning" });
      expect(py!.detail).toContain("cannot reach 127.0.0.1:9 from this host");
      expect(py!.detail).not.toContain("s3cr3t-pass");
      expect(npm).toMatchObject({ ok: false });
      expect(npm!.detail).toContain("answers HTTP 404: is sandbox.packages.npm.registry the index's URL?");
      // As root the fetch runs as uid 65534, which cannot pass a 0700 directory; otherwise as this user.
      expect(cache!.ok).toBe(process.getuid?.() !== 0);
      if (!cache!.ok) expect(cache!.detail).toContain(`uid 65534 cannot pass through ${hidden}`);
    } finally {
      rmSync(hidden, { recursive: true, force: true });
    }
  });

  it("keeps its cache within cacheMaxBytes: files go after a fetch, the fetch itself is not affected", async () => {
    const smallCache = worldReadableTempDir("hexr-fetch-smallcache-");
    const small = new PackageFetcher({ python: { url: `${pyIndex.origin}/simple/` }, cacheDir: smallCache, cacheMaxBytes: 1 });
    try {
      const r = await small.fetch({ id: id(), language: "python", specs: ["hexr-top"], timeoutMs: 60_000 });
      outputs.push(r.sourceDir);
      expect(readdirSync(r.sourceDir).length).toBe(2);
    } finally {
      await small.stop(); // waits for the prune the fetch started
    }
    const left: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else left.push(join(d, e.name));
      }
    };
    walk(smallCache);
    expect(left).toEqual([]);
    rmSync(smallCache, { recursive: true, force: true });
  });

  it("installs an npm package with its dependency into a node_modules tree; the second time from the cache", async () => {
    const first = await fetcher.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-top"], timeoutMs: 60_000 });
    outputs.push(first.sourceDir);
    const nm = join(first.sourceDir, "node_modules");
    expect(JSON.parse(readFileSync(join(nm, "hexr-npm-top", "package.json"), "utf8")).version).toBe("2.1.0");
    expect(existsSync(join(nm, "hexr-npm-dep", "index.js"))).toBe(true);
    const tarballRequests = () => npmReg.requests.filter((r) => r.endsWith(".tgz")).length;
    expect(tarballRequests()).toBe(2);

    const second = await fetcher.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-top@2.1.0"], timeoutMs: 60_000 });
    outputs.push(second.sourceDir);
    expect(existsSync(join(second.sourceDir, "node_modules", "hexr-npm-dep", "index.js"))).toBe(true);
    expect(tarballRequests()).toBe(2);
  });

  it("names a package the index does not have", async () => {
    await expect(fetcher.fetch({ id: id(), language: "python", specs: ["hexr-nope"], timeoutMs: 60_000 })).rejects.toMatchObject({
      code: "sandbox.package_unavailable",
      details: { package: "hexr-nope" },
    });
    await expect(
      fetcher.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-nope"], timeoutMs: 60_000 }),
    ).rejects.toMatchObject({ code: "sandbox.package_unavailable", details: { package: "hexr-npm-nope" } });
    await expect(
      fetcher.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-top@9.9.9"], timeoutMs: 60_000 }),
    ).rejects.toMatchObject({ code: "sandbox.package_unavailable", details: { package: "hexr-npm-top@9.9.9" } });
  });

  it("never shows the credentials of a private index in its errors", async () => {
    const token = "s3cretTok3n";
    const withCreds = new PackageFetcher({ python: { url: `http://hexr:${token}@127.0.0.1:${pyIndex.port}/simple/` }, cacheDir });
    try {
      const err = await withCreds
        .fetch({ id: id(), language: "python", specs: ["hexr-nope"], timeoutMs: 60_000 })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "sandbox.package_unavailable" });
      expect((err as Error).message).toContain(`http://127.0.0.1:${pyIndex.port}/simple/`);
      expect(JSON.stringify(err) + (err as Error).message).not.toContain(token);
    } finally {
      await withCreds.stop();
    }
  });

  it("refuses a host the index links to but the operator did not allow, and says which", async () => {
    const err = await fetcher
      .fetch({ id: id(), language: "python", specs: ["hexr-elsewhere"], timeoutMs: 60_000 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "sandbox.package_index_unreachable", kind: "unavailable", details: { host: "localhost" } });
    expect((err as Error).message).toContain(`localhost:${stray.port}`);
    expect((err as Error).message).toContain("sandbox.packages.python.allowHosts");
    expect(stray.requests).toEqual([]);
  });

  it("reports an index that cannot be reached, naming its host", async () => {
    const down = new PackageFetcher({ python: { url: "http://127.0.0.1:1/simple/" }, cacheDir });
    try {
      const err = await down
        .fetch({ id: id(), language: "python", specs: ["hexr-top"], timeoutMs: 60_000 })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "sandbox.package_index_unreachable", details: { host: "127.0.0.1", port: 1 } });
      expect((err as Error).message).toContain("127.0.0.1:1");
    } finally {
      await down.stop();
    }
  });

  it("runs the fetch in a cgroup of its own: a memory hog is killed there", async () => {
    const small = new PackageFetcher({
      python: { url: `${pyIndex.origin}/simple/` },
      cacheDir,
      limits: { memoryBytes: 64 * 1024 * 1024, pids: 64, cpus: 1 },
    });
    try {
      const r = await small.inspect("python", ["/usr/bin/python3", "-c", "x = bytearray(512 * 1024 * 1024); print('survived')"]);
      expect(r.log).not.toContain("survived");
      expect(r.oomKilled).toBe(true);
    } finally {
      await small.stop();
    }
  });

  it("stops a fetch whose execution is cancelled", async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expect(
      fetcher.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-top"], timeoutMs: 60_000, signal: ctl.signal }),
    ).rejects.toMatchObject({ code: "sandbox.aborted" });
  });

  it("stops a fetch that outlasts its time", async () => {
    await expect(fetcher.fetch({ id: id(), language: "python", specs: ["hexr-top"], timeoutMs: 1 })).rejects.toMatchObject({
      code: "sandbox.package_install_timeout",
      kind: "timeout",
    });
  });

  it("never shows the installer anything of the host but /usr, or a way out but the proxy", async () => {
    const script = [
      "id -u; id -g",
      "ls -A /",
      "ls -A /tmp /run/hexr",
      `ls -d ${dataDir} 2>&1`,
      `cat ${join(dataDir, "admin.key")} 2>&1`,
      "env | sort",
      // The index by address, bypassing the proxy: the sandbox's network namespace has only loopback.
      `python3 -c "import socket; socket.create_connection(('127.0.0.1', ${pyIndex.port}), timeout=2)" 2>&1 | tail -1`,
      // Through the forwarder: the allowed index, then a host that is not allowed.
      `python3 -c "import urllib.request as u; print('index', u.urlopen(u.Request('http://127.0.0.1:${pyIndex.port}/simple/hexr-dep/'), timeout=5).status)" 2>&1 | tail -1`,
      `python3 -c "import urllib.request as u; u.urlopen('http://localhost:${stray.port}/', timeout=5)" 2>&1 | tail -1`,
    ].join("; echo ---; ");
    const { exitCode, log, proxy } = await fetcher.inspect(
      "python",
      PackageFetcher.forwarded("python", ["/usr/bin/env", "http_proxy=http://127.0.0.1:3128", "/bin/sh", "-c", script]),
    );
    expect(exitCode).toBe(0);
    const parts = log.split("---\n").map((p) => p.trim());
    expect(parts[0]).toBe("65534\n65534");
    const rootLinks = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"].filter((n) => existsSync(`/${n}`));
    expect(parts[1]!.split("\n").sort()).toEqual(
      [...rootLinks, "cache", "dev", "etc", "out", "proc", "run", "tmp", "usr"].sort(),
    );
    expect(parts[2]).toBe("/run/hexr:\nfetch\nlog\nproxy.sock\n\n/tmp:");
    expect(parts[3]).toContain("No such file or directory");
    expect(parts[4]).toContain("No such file or directory");
    expect(log).not.toContain(adminKey);
    expect(parts[5]!.split("\n").map((l) => l.split("=")[0])).toEqual(["HOME", "LANG", "PATH", "PWD", "TMPDIR", "http_proxy"]);
    expect(parts[6]).toContain("ConnectionRefusedError");
    expect(parts[7]).toBe("index 200");
    expect(parts[8]).toContain("403");
    expect(proxy.refusals.map((r) => r.host)).toEqual(["localhost"]);
    expect(stray.requests).toEqual([]);
  });
});

describe("package fetch from a private index", () => {
  const wheels = worldReadableTempDir("hexr-priv-wheels-");
  const tarballs = worldReadableTempDir("hexr-priv-npm-");
  const cacheDir = worldReadableTempDir("hexr-priv-cache-");
  const password = "pypi-Pa55word-0123456789";
  const token = "npm_T0ken0123456789abcdef";
  const env = { PYPI_PASSWORD: password, NPM_TOKEN: token };
  const logged: string[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => void logged.push(line) });
  let pyIndex: TestIndex;
  let npmReg: TestIndex;
  const fetchers = fetcherMaker(() => ({
    python: { url: `${pyIndex.origin}/simple/`, auth: { username: "ci", passwordEnv: "PYPI_PASSWORD" } },
    npm: { url: npmReg.origin, auth: { tokenEnv: "NPM_TOKEN" } },
    cacheDir,
    env,
    log,
  }));
  const fetcherWith = fetchers.make;

  beforeAll(async () => {
    buildWheel(wheels, { name: "hexr-private", module: "P = 1\n" });
    buildNpmTarball(tarballs, { name: "hexr-npm-private", indexJs: "module.exports = 'private';\n" });
    // As a private index: every request, the files too, must carry the credentials.
    pyIndex = await startSimpleIndex([join(wheels, "hexr_private-1.0.0-py3-none-any.whl")], {
      authorization: `Basic ${Buffer.from(`ci:${password}`).toString("base64")}`,
      fileDelayMs: 1000, // long enough to look at the host's processes during the fetch
    });
    npmReg = await startNpmRegistry([join(tarballs, "hexr-npm-private-1.0.0.tgz")], { authorization: `Bearer ${token}` });
  });
  afterAll(async () => {
    await fetchers.stopAll();
    await Promise.all([pyIndex?.close(), npmReg?.close()]);
    for (const d of [wheels, tarballs, cacheDir]) rmSync(d, { recursive: true, force: true });
  });

  it("fetches with the credentials from the environment, which no host command line shows", async () => {
    const f = fetcherWith({});
    // Every command line on the host while pip fetches (the file is held back a second).
    const cmdlines = new Set<string>();
    const watch = setInterval(() => {
      for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
        try {
          cmdlines.add(readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " "));
        } catch {
          // gone
        }
      }
    }, 50);
    try {
      const py = await f.fetch({ id: id(), language: "python", specs: ["hexr-private"], timeoutMs: 60_000 });
      expect(readdirSync(py.sourceDir)).toEqual(["hexr_private-1.0.0-py3-none-any.whl"]);
      rmSync(py.sourceDir, { recursive: true, force: true });
    } finally {
      clearInterval(watch);
    }
    expect([...cmdlines].some((c) => c.includes("pip download"))).toBe(true); // the watch saw the fetch
    expect([...cmdlines].filter((c) => c.includes(password))).toEqual([]);

    const js = await f.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-private"], timeoutMs: 60_000 });
    expect(readFileSync(join(js.sourceDir, "node_modules", "hexr-npm-private", "index.js"), "utf8")).toContain("private");
    rmSync(js.sourceDir, { recursive: true, force: true });
    expect(npmReg.requests.some((p) => p.endsWith(".tgz"))).toBe(true);
    expect(logged.join("")).not.toContain(password);
    expect(logged.join("")).not.toContain(token);
  });

  it("says the index wants credentials when none are configured, and which setting", async () => {
    const f = fetcherWith({ python: { url: `${pyIndex.origin}/simple/` }, npm: { url: npmReg.origin } });
    const py = await errorOf(f.fetch({ id: id(), language: "python", specs: ["hexr-private"], timeoutMs: 60_000 }));
    expect(py).toMatchObject({ code: "sandbox.package_index_unauthorized", details: { status: 401 } });
    expect(py!.message).toContain("wants credentials (HTTP 401): set sandbox.packages.python.username and .passwordEnv");
    const js = await errorOf(f.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-private"], timeoutMs: 60_000 }));
    expect(js).toMatchObject({ code: "sandbox.package_index_unauthorized", details: { status: 401 } });
    expect(js!.message).toContain("set sandbox.packages.npm.tokenEnv");
  });

  it("says the index refused wrong credentials, without showing them", async () => {
    const wrong = { PYPI_PASSWORD: "wrong-pa55word-xyz", NPM_TOKEN: "npm_wrongT0ken-xyz" };
    const f = fetcherWith({ env: wrong });
    for (const [language, spec, secret] of [
      ["python", "hexr-private", wrong.PYPI_PASSWORD],
      ["javascript", "hexr-npm-private", wrong.NPM_TOKEN],
    ] as const) {
      const e = await errorOf(f.fetch({ id: id(), language, specs: [spec], timeoutMs: 60_000 }));
      expect(e).toMatchObject({ code: "sandbox.package_index_unauthorized" });
      expect(e!.message).toContain("refused the credentials (HTTP 401)");
      expect(JSON.stringify(e) + e!.message).not.toContain(secret);
    }
    expect(logged.join("")).not.toContain("wrong-pa55word-xyz");
    expect(logged.join("")).not.toContain("npm_wrongT0ken-xyz");
  });

  it("names an unset credentials variable before fetching, and the doctor reports it", async () => {
    const before = pyIndex.requests.length;
    const f = fetcherWith({ env: {} });
    const e = await errorOf(f.fetch({ id: id(), language: "python", specs: ["hexr-private"], timeoutMs: 60_000 }));
    expect(e).toMatchObject({ code: "sandbox.packages_credentials_missing" });
    expect(e!.message).toContain(
      "sandbox.packages.python.passwordEnv names the environment variable PYPI_PASSWORD, which is not set",
    );
    expect(pyIndex.requests.length).toBe(before);
    const [py, npm] = await f.check();
    expect(py).toMatchObject({ name: "packages:python", ok: false, severity: "warning" });
    expect(py!.detail).toContain("PYPI_PASSWORD");
    expect(npm!.detail).toContain("sandbox.packages.npm.tokenEnv names the environment variable NPM_TOKEN");
    // With the variables set, the doctor's probes carry the credentials.
    const [pyOk, npmOk] = await fetcherWith({}).check();
    expect([pyOk!.ok, npmOk!.ok]).toEqual([true, true]);
  });

  it("takes the credentials' variables from the platform config and reads them from the platform's environment", async () => {
    const config = SandboxConfig.parse({
      packages: {
        python: { indexUrl: `${pyIndex.origin}/simple/`, username: "ci", passwordEnv: "HEXR_TEST_PYPI_PASSWORD" },
        npm: { registry: npmReg.origin, tokenEnv: "HEXR_TEST_NPM_TOKEN" },
        cacheDir,
      },
    });
    const f = packageFetcherFrom(config, cacheDir, log)!;
    fetchers.adopt(f);
    process.env["HEXR_TEST_PYPI_PASSWORD"] = password;
    process.env["HEXR_TEST_NPM_TOKEN"] = token;
    try {
      const checks = await f.check();
      expect(checks.map((c) => [c.name, c.ok])).toEqual([
        ["packages:python", true],
        ["packages:npm", true],
        ["packages:cache", true],
      ]);
    } finally {
      delete process.env["HEXR_TEST_PYPI_PASSWORD"];
      delete process.env["HEXR_TEST_NPM_TOKEN"];
    }
  });
});

describe("package fetch from an https index behind its own CA", () => {
  const wheels = worldReadableTempDir("hexr-tls-wheels-");
  const tarballs = worldReadableTempDir("hexr-tls-npm-");
  const cacheDir = worldReadableTempDir("hexr-tls-cache-");
  const pki = mkdtempSync(join(tmpdir(), "hexr-tls-pki-"));
  let caFile: string;
  let pyIndex: TestIndex;
  let npmReg: TestIndex;
  const fetchers = fetcherMaker(() => ({ python: { url: `${pyIndex.origin}/simple/` }, npm: { url: npmReg.origin }, cacheDir }));
  const fetcherWith = fetchers.make;

  beforeAll(async () => {
    const tls = makeTestTls(pki);
    caFile = join(pki, "ca.pem");
    buildWheel(wheels, { name: "hexr-tls", module: "T = 1\n" });
    buildNpmTarball(tarballs, { name: "hexr-npm-tls", indexJs: "module.exports = 'tls';\n" });
    pyIndex = await startSimpleIndex([join(wheels, "hexr_tls-1.0.0-py3-none-any.whl")], { tls });
    npmReg = await startNpmRegistry([join(tarballs, "hexr-npm-tls-1.0.0.tgz")], { tls });
  });
  afterAll(async () => {
    await fetchers.stopAll();
    await Promise.all([pyIndex?.close(), npmReg?.close()]);
    for (const d of [wheels, tarballs, cacheDir, pki]) rmSync(d, { recursive: true, force: true });
  });

  it("fetches over https through the proxy (CONNECT) when caFile names the CA", async () => {
    const f = fetcherWith({ caFile });
    const py = await f.fetch({ id: id(), language: "python", specs: ["hexr-tls"], timeoutMs: 60_000 });
    expect(readdirSync(py.sourceDir)).toEqual(["hexr_tls-1.0.0-py3-none-any.whl"]);
    const js = await f.fetch({ id: id(), language: "javascript", specs: ["hexr-npm-tls"], timeoutMs: 60_000 });
    expect(readFileSync(join(js.sourceDir, "node_modules", "hexr-npm-tls", "index.js"), "utf8")).toContain("tls");
    for (const d of [py.sourceDir, js.sourceDir]) rmSync(d, { recursive: true, force: true });
    expect(pyIndex.requests).toContain("/files/hexr_tls-1.0.0-py3-none-any.whl");
    expect(npmReg.requests.some((p) => p.endsWith("hexr-npm-tls-1.0.0.tgz"))).toBe(true);
    const checks = await f.check();
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ["packages:python", true],
      ["packages:npm", true],
      ["packages:cache", true],
    ]);
  });

  it("says the certificate is not trusted, and what to set, when the CA is not configured", async () => {
    // A cache of its own: npm would answer from the cache the first test filled when the registry fails.
    const ownCache = worldReadableTempDir("hexr-tls-cache2-");
    const f = fetcherWith({ cacheDir: ownCache });
    for (const [language, spec] of [
      ["python", "hexr-tls"],
      ["javascript", "hexr-npm-tls"],
    ] as const) {
      const e = await errorOf(f.fetch({ id: id(), language, specs: [spec], timeoutMs: 60_000 }));
      expect(e).toMatchObject({ code: "sandbox.package_index_untrusted" });
      expect(e!.message).toContain("set sandbox.packages.caFile");
    }
    const [py] = await f.check();
    expect(py).toMatchObject({ name: "packages:python", ok: false });
    expect(py!.detail).toContain("TLS certificate is not trusted");
    rmSync(ownCache, { recursive: true, force: true });
  });

  it("refuses a caFile that holds no certificate, before any fetch", async () => {
    const bad = join(pki, "not-a-cert.pem");
    writeFileSync(bad, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
    for (const file of [bad, join(pki, "absent.pem"), join(pki, "server.key")]) {
      const before = pyIndex.requests.length;
      const e = await errorOf(
        fetcherWith({ caFile: file }).fetch({ id: id(), language: "python", specs: ["hexr-tls"], timeoutMs: 60_000 }),
      );
      expect(e).toMatchObject({ code: "sandbox.packages_ca_invalid" });
      expect(e!.message).toContain(`sandbox.packages.caFile ${file}`);
      expect(pyIndex.requests.length).toBe(before);
    }
    const checks = await fetcherWith({ caFile: bad }).check();
    expect(checks[0]).toMatchObject({ name: "packages:ca", ok: false });
  });
});
