import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EgressProxy, hostOfUrl, isPrivateAddress, parseAllowedHost } from "./egress-proxy.js";

/** Sends raw bytes to the proxy socket and returns everything it answers until it closes. */
function exchange(socketPath: string, ...chunks: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let out = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      out += d;
      // After the tunnel opens, the next chunk goes through it.
      if (out.startsWith("HTTP/1.1 200 Connection Established\r\n\r\n") && chunks.length) s.write(chunks.shift()!);
    });
    s.on("error", reject);
    s.on("close", () => resolve(out));
    s.write(chunks.shift()!);
  });
}

describe("egress proxy", () => {
  const dir = mkdtempSync(join(tmpdir(), "hexr-egress-"));
  const socketPath = join(dir, "proxy.sock");
  let origin: Server;
  let port = 0;
  let closedPort = 0;
  const seen: string[] = [];
  let proxy: EgressProxy;

  beforeAll(async () => {
    origin = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} proxy-auth=${req.headers["proxy-authorization"] ?? "-"}`);
      res.end(`hello from ${req.url}`);
    });
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    port = (origin.address() as AddressInfo).port;
    const spare = createServer();
    await new Promise<void>((r) => spare.listen(0, "127.0.0.1", r));
    closedPort = (spare.address() as AddressInfo).port;
    await new Promise<void>((r) => spare.close(() => r()));
    proxy = await EgressProxy.start({
      socketPath,
      allow: [
        { host: "127.0.0.1", ports: [port, closedPort] },
        // Allowed by name, but not an address the index is on: refused as private.
        { host: "127.0.0.2", ports: [port] },
      ],
      privateAllowed: new Set(["127.0.0.1"]),
    });
  });
  afterAll(async () => {
    await proxy.close();
    await new Promise<void>((r) => origin.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("listens on a socket only its owner may use", () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
  });

  it("forwards an absolute-form GET to an allowed host, without proxy headers", async () => {
    const res = await exchange(
      socketPath,
      `GET http://127.0.0.1:${port}/simple/x/?a=1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive\r\n\r\n`,
    );
    expect(res).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(res).toContain("hello from /simple/x/?a=1");
    expect(seen.at(-1)).toBe("GET /simple/x/?a=1 proxy-auth=-");
  });

  it("tunnels CONNECT to an allowed host", async () => {
    const res = await exchange(
      socketPath,
      `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
      `GET /through-tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(res).toContain("hello from /through-tunnel");
  });

  it.each([
    ["GET to a host not allowed", (p: number) => `GET http://localhost:${p}/ HTTP/1.1\r\nHost: localhost\r\n\r\n`, "localhost"],
    ["CONNECT to a host not allowed", () => `CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n`, "pypi.org"],
    ["CONNECT to an allowed host on another port", () => `CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n`, "127.0.0.1"],
    ["CONNECT to an allowed name on a private address", (p: number) => `CONNECT 127.0.0.2:${p} HTTP/1.1\r\n\r\n`, "127.0.0.2"],
    [
      "GET to the cloud metadata address",
      () => `GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n`,
      "169.254.169.254",
    ],
  ])("refuses a %s with 403 and records it", async (_what, request, host) => {
    const before = seen.length;
    const res = await exchange(socketPath, request(port));
    expect(res).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(proxy.refusals.at(-1)?.host).toBe(host);
    expect(seen.length).toBe(before);
  });

  it("answers 502 when an allowed host cannot be reached, and records it", async () => {
    const res = await exchange(socketPath, `CONNECT 127.0.0.1:${closedPort} HTTP/1.1\r\n\r\n`);
    expect(res).toMatch(/^HTTP\/1\.1 502 Bad Gateway/);
    expect(proxy.failures.at(-1)).toMatchObject({ host: "127.0.0.1", port: closedPort });
    expect(proxy.failures.at(-1)?.reason).toContain("ECONNREFUSED");
  });

  it.each([
    ["origin-form GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    ["https without CONNECT", `GET https://127.0.0.1/ HTTP/1.1\r\n\r\n`],
    ["CONNECT without a port", "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n"],
    ["not HTTP", "\x16\x03\x01 hello\r\n\r\n"],
  ])("rejects %s with 400", async (_what, request) => {
    expect(await exchange(socketPath, request)).toMatch(/^HTTP\/1\.1 400 Bad Request/);
  });

  it("refuses a request head that never ends", async () => {
    expect(await exchange(socketPath, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nX: ${"a".repeat(20_000)}`)).toMatch(
      /^HTTP\/1\.1 431 /,
    );
  });

  it("classifies addresses and parses host entries", () => {
    for (const a of [
      "127.0.0.1",
      "10.1.2.3",
      "172.20.0.1",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
    ])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ["151.101.0.223", "8.8.8.8", "172.32.0.1", "2a04:4e42::223"]) expect(isPrivateAddress(a), a).toBe(false);
    expect(parseAllowedHost("Files.PythonHosted.org")).toEqual({ host: "files.pythonhosted.org", ports: [] });
    expect(parseAllowedHost("mirror.internal:8443")).toEqual({ host: "mirror.internal", ports: [8443] });
    expect(parseAllowedHost("[::1]:8080")).toEqual({ host: "::1", ports: [8080] });
    for (const bad of ["http://x", "a b", "x:99999", "x/y", ""]) expect(() => parseAllowedHost(bad), bad).toThrow();
    expect(hostOfUrl("https://pypi.org/simple")).toEqual({ host: "pypi.org", ports: [443] });
    expect(hostOfUrl("http://127.0.0.1:8080/simple/")).toEqual({ host: "127.0.0.1", ports: [8080] });
  });
});
