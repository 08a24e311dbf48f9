import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nativeBinding, peerCredentials, socketFd } from "./peer-cred.js";

let dir: string;
let server: Server;
let sockPath: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "hexr-peercred-"));
  sockPath = join(dir, "s.sock");
  server = createServer();
  await new Promise<void>((r) => server.listen(sockPath, r));
});

afterEach(async () => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const nextConnection = () => new Promise<Socket>((r) => server.once("connection", r));

function connectFromChild(opts: { uid?: number; gid?: number } = {}): ChildProcess {
  const child = spawn(
    process.execPath,
    ["-e", `require("net").connect(${JSON.stringify(sockPath)}); setInterval(() => {}, 1000)`],
    {
      stdio: "ignore",
      ...opts,
    },
  );
  children.push(child);
  return child;
}

describe("peerCredentials (SO_PEERCRED)", () => {
  it("reports this process for a connection made by this process", async () => {
    const accepted = nextConnection();
    const { connect } = await import("node:net");
    const client = connect(sockPath);
    const sock = await accepted;
    expect(peerCredentials(sock)).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    client.destroy();
    sock.destroy();
  });

  it("reports the child's pid, not ours, for a connection made by a child", async () => {
    const accepted = nextConnection();
    const child = connectFromChild();
    const sock = await accepted;
    expect(child.pid).toBeGreaterThan(0);
    expect(peerCredentials(sock).pid).toBe(child.pid);
    sock.destroy();
  });

  it("reports the uid and gid the kernel gave the peer (child running as nobody; needs root)", async () => {
    // The repo's CI runs as root, like this machine; the uid switch is the point of the test.
    expect(process.getuid!()).toBe(0);
    chmodSync(dir, 0o755);
    chmodSync(sockPath, 0o777);
    const accepted = nextConnection();
    const child = connectFromChild({ uid: 65534, gid: 65534 });
    const sock = await accepted;
    expect(peerCredentials(sock)).toEqual({ pid: child.pid, uid: 65534, gid: 65534 });
    sock.destroy();
  });

  it("rejects a closed socket with a typed error", async () => {
    const accepted = nextConnection();
    const { connect } = await import("node:net");
    const client = connect(sockPath);
    const sock = await accepted;
    sock.destroy();
    client.destroy();
    expect(() => socketFd(sock)).toThrow(expect.objectContaining({ code: "identity.peer_unknown" }));
    expect(() => peerCredentials(sock)).toThrow(expect.objectContaining({ code: "identity.peer_unknown" }));
  });

  it("the addon refuses non-sockets and bad arguments", () => {
    const fd = openSync(dir, "r");
    try {
      expect(() => nativeBinding().peerCred(fd)).toThrow(/SO_PEERCRED/);
      expect(() => nativeBinding().peerCred(-1)).toThrow(/file descriptor/);
      expect(() => (nativeBinding().peerCred as (x: unknown) => unknown)("3")).toThrow(/file descriptor/);
    } finally {
      closeSync(fd);
    }
  });
});
