import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

/** A directory readable by the sandbox user (bubblewrap binds it as uid 65534). */
export function worldReadableTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * Builds a real pure-Python wheel (a zip with the package and its dist-info) with the host's python3,
 * so pip installs it offline exactly as one downloaded from an index.
 */
export function buildWheel(dir: string, opts: { name: string; version?: string; module: string; requires?: string[] }): string {
  const version = opts.version ?? "1.0.0";
  const dist = opts.name.replace(/-/g, "_");
  const file = join(dir, `${dist}-${version}-py3-none-any.whl`);
  const metadata =
    [
      `Metadata-Version: 2.1`,
      `Name: ${opts.name}`,
      `Version: ${version}`,
      ...(opts.requires ?? []).map((r) => `Requires-Dist: ${r}`),
    ].join("\n") + "\n";
  const script = `
import sys, zipfile
path, dist, version, pkg, module, metadata = sys.argv[1:7]
info = f"{dist}-{version}.dist-info"
files = {
  f"{pkg}/__init__.py": module,
  f"{info}/METADATA": metadata,
  f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: hexr-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = "".join(f"{n},,\\n" for n in files) + f"{info}/RECORD,,\\n"
with zipfile.ZipFile(path, "w") as z:
  for n, c in files.items():
    z.writestr(n, c)
  z.writestr(f"{info}/RECORD", record)
`;
  execFileSync("/usr/bin/python3", ["-c", script, file, dist, version, dist.toLowerCase(), opts.module, metadata]);
  chmodSync(file, 0o644);
  return file;
}

/**
 * The sample packages the index and microvm tests install: wheels hexr-stats 2.0.0 (needs
 * hexr-math>=1; `mean2` doubles a mean) and hexr-math 1.0.0 into `wheels`; npm tarballs hexr-greet
 * and @hexr/shout (needs hexr-greet) into `tarballs`.
 */
export function buildSamplePackages(wheels: string, tarballs: string): void {
  buildWheel(wheels, {
    name: "hexr-stats",
    version: "2.0.0",
    module: "from hexr_math import double\ndef mean2(xs):\n    return double(sum(xs) / len(xs))\n",
    requires: ["hexr-math>=1"],
  });
  buildWheel(wheels, { name: "hexr-math", module: "def double(x):\n    return 2 * x\n" });
  buildNpmTarball(tarballs, { name: "hexr-greet", indexJs: "module.exports = (n) => 'hi ' + n;\n" });
  buildNpmTarball(tarballs, {
    name: "@hexr/shout",
    indexJs: "const greet = require('hexr-greet');\nmodule.exports = (n) => greet(n).toUpperCase();\n",
    dependencies: { "hexr-greet": "1.0.0" },
  });
}

/** Builds an npm tarball the way `npm pack` lays it out (`package/…`, named `<name>-<version>.tgz`). */
export function buildNpmTarball(
  dir: string,
  opts: { name: string; version?: string; indexJs: string; dependencies?: Record<string, string> },
): string {
  const version = opts.version ?? "1.0.0";
  const work = mkdtempSync(join(tmpdir(), "hexr-npm-src-"));
  const pkg = join(work, "package");
  mkdirSync(pkg);
  writeFileSync(
    join(pkg, "package.json"),
    JSON.stringify({
      name: opts.name,
      version,
      main: "index.js",
      license: "MIT",
      ...(opts.dependencies ? { dependencies: opts.dependencies } : {}),
    }),
  );
  writeFileSync(join(pkg, "index.js"), opts.indexJs);
  const base = opts.name.startsWith("@") ? opts.name.slice(1).replace("/", "-") : opts.name;
  const file = join(dir, `${base}-${version}.tgz`);
  execFileSync("tar", ["-czf", file, "-C", work, "package"]);
  chmodSync(file, 0o644);
  return file;
}

/** A package index served over HTTP on 127.0.0.1, counting what it is asked for. */
export interface TestIndex {
  /** `http://127.0.0.1:<port>` (https with the tls option) */
  readonly origin: string;
  readonly port: number;
  /** Request paths in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/**
 * `fileDelayMs` holds back every file (wheel, tarball) response, as a far-away index would (for
 * benchmarks); `authorization`, the Authorization header every request must carry (else 401), as a
 * private index does.
 */
export interface TestIndexOptions {
  fileDelayMs?: number;
  authorization?: string;
  /** Serve https with this key and certificate (see makeTestTls); the origin is then https://127.0.0.1:<port>. */
  tls?: { key: string; cert: string };
}

/** A throwaway CA (PEM) and a server certificate it signed for 127.0.0.1 and localhost, made with openssl. */
export function makeTestTls(dir: string): { caCert: string; key: string; cert: string } {
  const f = (n: string) => join(dir, n);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-subj",
    "/CN=Hexr Test Package CA",
    "-days",
    "2",
  ]);
  openssl(["req", "-new", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1"]);
  writeFileSync(f("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  openssl([
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-out",
    f("server.pem"),
    "-days",
    "2",
    "-extfile",
    f("ext.cnf"),
  ]);
  return {
    caCert: readFileSync(f("ca.pem"), "utf8"),
    key: readFileSync(f("server.key"), "utf8"),
    cert: readFileSync(f("server.pem"), "utf8"),
  };
}

async function serve(
  handler: (path: string) => { status: number; type?: string; body: string | Buffer; cache?: boolean },
  opts: TestIndexOptions = {},
) {
  const requests: string[] = [];
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    requests.push(path);
    if (opts.authorization !== undefined && req.headers.authorization !== opts.authorization) {
      res.writeHead(401, { "Content-Type": "application/json", "WWW-Authenticate": 'Basic realm="test index"' });
      res.end(JSON.stringify({ error: "unauthorized" }));
      return;
    }
    const r = handler(path);
    const send = () => {
      res.writeHead(r.status, {
        "Content-Type": r.type ?? "text/plain",
        "Content-Length": Buffer.byteLength(r.body),
        // As PyPI's and npm's file hosts do: immutable files may be cached for good.
        ...(r.cache ? { "Cache-Control": "max-age=365000000, immutable, public" } : {}),
      });
      res.end(r.body);
    };
    if (r.cache && opts.fileDelayMs) setTimeout(send, opts.fileDelayMs);
    else send();
  };
  const server: Server = opts.tls
    ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, listener)
    : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/**
 * A PEP 503 simple index over the given wheel files: `/simple/<name>/` lists a project's files
 * (with their sha256, as PyPI does), `/files/<file>` serves them. `extraLinks` adds links (e.g. to
 * another host) to a project's page.
 */
export function startSimpleIndex(
  wheels: string[],
  opts: TestIndexOptions & { extraLinks?: Record<string, string[]> } = {},
): Promise<TestIndex> {
  const extraLinks = opts.extraLinks ?? {};
  const files = new Map(wheels.map((w) => [basename(w), readFileSync(w)]));
  const norm = (n: string) => n.toLowerCase().replace(/[-_.]+/g, "-");
  return serve((path) => {
    if (path === "/simple/") {
      // PEP 503's root page: one anchor per project.
      const projects = [...new Set([...files.keys()].map((f) => norm(f.slice(0, f.indexOf("-")))))];
      const anchors = projects.map((p) => `<a href="/simple/${p}/">${p}</a>`).join("<br/>\n");
      return { status: 200, type: "text/html", body: `<!DOCTYPE html><html><body>\n${anchors}\n</body></html>\n` };
    }
    const page = /^\/simple\/([^/]+)\/$/.exec(path);
    if (page) {
      const name = norm(decodeURIComponent(page[1]!));
      const links = [...files]
        .filter(([f]) => norm(f.slice(0, f.indexOf("-"))) === name)
        .map(([f, b]) => `<a href="/files/${f}#sha256=${sha256(b)}">${f}</a>`);
      links.push(...(extraLinks[name] ?? []).map((u) => `<a href="${u}">${basename(new URL(u).pathname)}</a>`));
      if (links.length === 0) return { status: 404, body: "not found" };
      return { status: 200, type: "text/html", body: `<!DOCTYPE html><html><body>\n${links.join("<br/>\n")}\n</body></html>\n` };
    }
    const file = /^\/files\/([^/]+)$/.exec(path);
    const body = file ? files.get(file[1]!) : undefined;
    return body ? { status: 200, type: "application/octet-stream", body, cache: true } : { status: 404, body: "not found" };
  }, opts);
}

/**
 * An npm registry over tarballs built by buildNpmTarball: `/<name>` (scoped: `/@scope%2fname`) is
 * the packument with every version, `/<name>/-/<file>` the tarball.
 */
export async function startNpmRegistry(tarballs: string[], opts: TestIndexOptions = {}): Promise<TestIndex> {
  const byName = new Map<string, Array<{ version: string; file: string; body: Buffer; manifest: Record<string, unknown> }>>();
  for (const t of tarballs) {
    const body = readFileSync(t);
    const manifest = JSON.parse(execFileSync("tar", ["-xzOf", t, "package/package.json"], { encoding: "utf8" })) as Record<
      string,
      unknown
    > & { name: string; version: string };
    const list = byName.get(manifest.name) ?? [];
    list.push({ version: manifest.version, file: basename(t), body, manifest });
    byName.set(manifest.name, list);
  }
  let origin = "";
  const index = await serve((path) => {
    if (path === "/-/ping") return { status: 200, type: "application/json", body: "{}" }; // what `npm ping` asks
    const tarball = /^\/(.+)\/-\/([^/]+\.tgz)$/.exec(path);
    if (tarball) {
      const hit = byName.get(decodeURIComponent(tarball[1]!))?.find((v) => v.file === tarball[2]);
      return hit ? { status: 200, type: "application/octet-stream", body: hit.body, cache: true } : { status: 404, body: "{}" };
    }
    const name = decodeURIComponent(path.slice(1));
    const versions = byName.get(name);
    if (!versions) return { status: 404, type: "application/json", body: JSON.stringify({ error: "Not found" }) };
    const doc = {
      name,
      "dist-tags": { latest: versions[versions.length - 1]!.version },
      versions: Object.fromEntries(
        versions.map((v) => [
          v.version,
          {
            ...v.manifest,
            dist: {
              tarball: `${origin}/${name}/-/${v.file}`,
              shasum: createHash("sha1").update(v.body).digest("hex"),
              integrity: `sha512-${createHash("sha512").update(v.body).digest("base64")}`,
            },
          },
        ]),
      ),
    };
    return { status: 200, type: "application/json", body: JSON.stringify(doc) };
  }, opts);
  origin = index.origin;
  return index;
}
