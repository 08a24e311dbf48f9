/**
 * The only way out of a package fetch sandbox: an HTTP proxy on a unix socket that admits
 * `CONNECT host:port` and absolute-form requests (`GET http://host:port/…`) to the configured
 * package index hosts and nothing else. Refusals are answered 403, logged and kept, so a failed
 * fetch can say which host it was not allowed to reach.
 *
 * Names are resolved here, on the host, and an address in a private, loopback or link-local range
 * is refused unless the index itself is on it (so a public name that resolves to 127.0.0.1 or to a
 * cloud metadata address never reaches the platform or the host's network).
 */

import { lookup } from "node:dns/promises";
import { isIP, connect as tcpConnect, createServer, type Server, type Socket } from "node:net";
import { chmodSync, chownSync, rmSync } from "node:fs";
import type { Logger } from "pino";

/** A host the proxy admits; `ports` empty = 80 and 443. */
export interface AllowedHost {
  host: string;
  ports: number[];
}

export interface EgressRefusal {
  host: string;
  port: number;
  reason: string;
}

export interface EgressProxyOptions {
  /** Where the proxy listens (a unix socket path; removed on close). */
  socketPath: string;
  allow: AllowedHost[];
  /** Private addresses that may be reached (those the index itself resolves to). */
  privateAllowed?: Set<string>;
  /** Owner of the socket (the fetch sandbox's host uid/gid when the platform runs as root). */
  owner?: { uid: number; gid: number };
  log?: Logger;
  /** Resolves a name to addresses (default: the system resolver). */
  resolve?: (host: string) => Promise<string[]>;
}

const MAX_HEAD = 16 * 1024;

/** `host` or `host:port` (IPv6 in brackets) as the config writes it. */
export function parseAllowedHost(entry: string): AllowedHost {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/\s]+)(?::(\d{1,5}))?$/.exec(entry.trim());
  if (!m) throw new Error(`'${entry}' is not a host or host:port`);
  const host = m[1]!.replace(/^\[|\]$/g, "").toLowerCase();
  const port = m[2] ? Number(m[2]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) throw new Error(`'${entry}' has an invalid port`);
  return { host, ports: port ? [port] : [] };
}

/** The host and port of an index URL (default port by scheme). */
export function hostOfUrl(url: string): AllowedHost {
  const u = new URL(url);
  const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  return { host: u.hostname.replace(/^\[|\]$/g, "").toLowerCase(), ports: [port] };
}

/** Loopback, private, link-local, CGNAT, unspecified and multicast addresses (v4, v6, v4-mapped). */
export function isPrivateAddress(addr: string): boolean {
  const v4 = addr.startsWith("::ffff:") && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
  if (isIP(v4) === 4) {
    const [a, b] = v4.split(".").map(Number) as [number, number];
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 100 && b >= 64 && b < 128) ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b < 32) ||
      (a === 192 && b === 168) ||
      a >= 224
    );
  }
  const lower = addr.toLowerCase();
  return (
    lower === "::" ||
    lower === "::1" ||
    /^f[cd]/.test(lower) || // unique local fc00::/7
    /^fe[89ab]/.test(lower) || // link-local fe80::/10
    lower.startsWith("ff") // multicast
  );
}

async function systemResolve(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

interface RequestHead {
  method: string;
  target: string;
  version: string;
  headers: string[];
  /** Bytes after the head (the start of a body or of TLS). */
  rest: Buffer;
}

function parseHead(buf: Buffer, end: number): RequestHead | undefined {
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^([A-Z]+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0] ?? "");
  if (!m) return undefined;
  return { method: m[1]!, target: m[2]!, version: m[3]!, headers: lines.slice(1).filter(Boolean), rest: buf.subarray(end + 4) };
}

export class EgressProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Every refusal since the proxy started, in order. */
  readonly refusals: EgressRefusal[] = [];
  /** Upstream hosts that could not be reached (allowed, but the connection failed). */
  readonly failures: EgressRefusal[] = [];
  private readonly resolve: (host: string) => Promise<string[]>;

  private constructor(private readonly opts: EgressProxyOptions) {
    this.resolve = opts.resolve ?? systemResolve;
    this.server = createServer((s) => this.handle(s));
  }

  /** Listens on `socketPath` (only the owner may connect). */
  static async start(opts: EgressProxyOptions): Promise<EgressProxy> {
    const p = new EgressProxy(opts);
    rmSync(opts.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      p.server.once("error", reject);
      p.server.listen(opts.socketPath, () => resolve());
    });
    chmodSync(opts.socketPath, 0o600);
    if (opts.owner) chownSync(opts.socketPath, opts.owner.uid, opts.owner.gid);
    return p;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.opts.socketPath, { force: true });
  }

  private allowed(host: string, port: number): boolean {
    return this.opts.allow.some(
      (a) => a.host === host && (a.ports.length ? a.ports.includes(port) : port === 443 || port === 80),
    );
  }

  private handle(client: Socket): void {
    this.sockets.add(client);
    client.on("close", () => this.sockets.delete(client));
    client.on("error", () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) {
        if (buf.length > MAX_HEAD) {
          client.off("data", onData);
          this.answer(client, 431, "request head too large");
        }
        return;
      }
      client.off("data", onData);
      client.pause();
      const head = parseHead(buf, end);
      if (!head) return this.answer(client, 400, "not an HTTP/1 request");
      void this.route(client, head);
    };
    client.on("data", onData);
  }

  private async route(client: Socket, head: RequestHead): Promise<void> {
    let host: string;
    let port: number;
    let path = "";
    if (head.method === "CONNECT") {
      let target: AllowedHost;
      try {
        target = parseAllowedHost(head.target);
      } catch {
        return this.answer(client, 400, "CONNECT needs host:port");
      }
      if (target.ports.length !== 1) return this.answer(client, 400, "CONNECT needs host:port");
      host = target.host;
      port = target.ports[0]!;
    } else {
      let url: URL;
      try {
        url = new URL(head.target);
      } catch {
        return this.answer(client, 400, "only absolute-form requests and CONNECT are proxied");
      }
      if (url.protocol !== "http:") return this.answer(client, 400, "only http:// URLs are proxied without CONNECT");
      ({
        host,
        ports: [port],
      } = hostOfUrl(url.href) as { host: string; ports: [number] });
      path = url.pathname + url.search;
    }
    if (!this.allowed(host, port)) return this.refuse(client, host, port, "host not allowed");
    let addrs: string[];
    try {
      addrs = await this.resolve(host);
    } catch (err) {
      return this.fail(client, host, port, `cannot resolve (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
    const addr = addrs.find((a) => !isPrivateAddress(a) || this.opts.privateAllowed?.has(a));
    if (!addr) return this.refuse(client, host, port, `resolves to a private address (${addrs.join(", ")})`);

    const upstream = tcpConnect({ host: addr, port });
    let connected = false;
    this.sockets.add(upstream);
    upstream.on("close", () => this.sockets.delete(upstream));
    client.on("close", () => upstream.destroy());
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (connected) client.destroy();
      else this.fail(client, host, port, `cannot connect (${err.code ?? err.message})`);
    });
    upstream.once("connect", () => {
      connected = true;
      this.opts.log?.debug({ host, port, method: head.method }, "package egress");
      if (head.method === "CONNECT") client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      else upstream.write(this.originForm(head, path));
      if (head.rest.length) upstream.write(head.rest);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  /** The request as the origin server expects it: origin-form target, no proxy headers, one request per connection. */
  private originForm(head: RequestHead, path: string): string {
    const headers = head.headers.filter((h) => !/^(proxy-[a-z-]*|connection|keep-alive)\s*:/i.test(h));
    return [`${head.method} ${path || "/"} ${head.version}`, ...headers, "Connection: close", "", ""].join("\r\n");
  }

  private refuse(client: Socket, host: string, port: number, reason: string): void {
    this.refusals.push({ host, port, reason });
    this.opts.log?.warn({ host, port, reason }, "package egress refused");
    this.answer(client, 403, `hexr: ${host}:${port} is not an allowed package host (${reason})`);
  }

  private fail(client: Socket, host: string, port: number, reason: string): void {
    this.failures.push({ host, port, reason });
    this.opts.log?.warn({ host, port, reason }, "package index unreachable");
    this.answer(client, 502, `hexr: ${host}:${port}: ${reason}`);
  }

  private answer(client: Socket, status: number, text: string): void {
    const reason = { 400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway" }[status];
    const body = text + "\n";
    client.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
}
