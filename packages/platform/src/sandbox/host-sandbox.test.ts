import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostSandbox } from "./host-sandbox.js";
import { worldReadableTempDir } from "./test-support/packages.js";

describe("host sandbox (the platform's own confined helper processes)", () => {
  const parent = worldReadableTempDir("hexr-hostsb-parent-");
  const input = worldReadableTempDir("hexr-hostsb-in-");
  const sb = new HostSandbox({ prefix: "hexr-hostsb-", purpose: "test helper", runtimeParent: parent });
  let server: Server;
  let port: number;

  beforeAll(async () => {
    writeFileSync(join(input, "data.txt"), "from the host\n", { mode: 0o644 });
    server = createServer((s) => s.end("hello from the host\n"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await sb.stop();
    await new Promise((r) => server.close(r));
    for (const d of [parent, input]) rmSync(d, { recursive: true, force: true });
  });

  const sh = (script: string, extra: Partial<Parameters<HostSandbox["run"]>[0]> = {}) =>
    sb.run({ command: ["/bin/sh", "-c", script], timeoutMs: 30_000, ...extra });

  it("sees only its binds: read-only unless writable; its writes land in the writable one", async () => {
    const out = sb.workDir();
    const r = await sh(
      'cat /in/data.txt; echo x > /in/new 2>/dev/null && echo wrote-in; echo result > /out/r.txt; ls /; id -u; echo "$GREETING"',
      {
        binds: [
          { source: input, dest: "/in" },
          { source: out, dest: "/out", writable: true },
        ],
        env: { GREETING: "hi" },
      },
    );
    expect(r.exitCode, r.log).toBe(0);
    const lines = r.log.trim().split("\n");
    expect(lines[0]).toBe("from the host");
    expect(lines).not.toContain("wrote-in");
    expect(existsSync(join(input, "new"))).toBe(false);
    expect(readFileSync(join(out, "r.txt"), "utf8")).toBe("result\n");
    // The root: /usr and its links, the synthetic /etc, /proc, /dev, /tmp and the binds; nothing of the host's /root, /var, /home.
    expect(lines).toEqual(expect.arrayContaining(["in", "out", "usr", "etc", "tmp", "proc", "dev"]));
    for (const hostDir of ["root", "var", "home", "run", "srv"]) expect(lines).not.toContain(hostDir);
    expect(lines).toContain("65534");
    expect(lines.at(-1)).toBe("hi");
  });

  it("has no network: a port listening on the host's loopback is not reachable", async () => {
    const r = await sb.run({
      command: [
        "/usr/bin/python3",
        "-c",
        `import socket
try:
    socket.create_connection(("127.0.0.1", ${port}), timeout=2)
    print("connected")
except OSError as e:
    print("refused", e.errno)`,
      ],
      timeoutMs: 30_000,
    });
    expect(r.exitCode, r.log).toBe(0);
    expect(r.log).toMatch(/^refused/);
  });

  it("reports the exit code, and kills at the timeout and on abort", async () => {
    expect((await sh("exit 7")).exitCode).toBe(7);
    const slow = await sh("sleep 60", { timeoutMs: 300 });
    expect(slow.timedOut).toBe(true);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const cancelled = await sh("sleep 60", { signal: ac.signal });
    expect(cancelled.aborted).toBe(true);
    expect(cancelled.timedOut).toBe(false);
  });

  it("fails, never runs unconfined, when bubblewrap is not there", async () => {
    const none = new HostSandbox({
      prefix: "hexr-hostsb-none-",
      purpose: "test helper",
      runtimeParent: parent,
      bwrapPath: join(tmpdir(), "no-such-bwrap"),
    });
    try {
      const marker = join(input, "ran-unconfined");
      const r = await none.run({ command: ["/bin/sh", "-c", `touch ${marker}`], timeoutMs: 10_000 });
      expect(r.exitCode).toBeNull();
      expect(r.log).toMatch(/no-such-bwrap/);
      expect(existsSync(marker)).toBe(false);
    } finally {
      await none.stop();
    }
  });

  it("makes work directories only by plain names, inside its runtime directory", () => {
    for (const bad of ["../escape", "a/b", ".hidden", ""]) expect(() => sb.workDir(bad)).toThrow(/not a work directory name/);
    expect(sb.workDir("job-1.log").startsWith(sb.dir + "/")).toBe(true);
  });

  it("removes its runtime directory when stopped", async () => {
    const other = new HostSandbox({ prefix: "hexr-hostsb-stop-", purpose: "test helper", runtimeParent: parent });
    expect((await other.run({ command: ["/bin/true"], timeoutMs: 10_000 })).exitCode).toBe(0);
    expect(readdirSync(parent).filter((n) => n.startsWith("hexr-hostsb-stop-"))).toHaveLength(1);
    await other.stop();
    expect(readdirSync(parent).filter((n) => n.startsWith("hexr-hostsb-stop-"))).toHaveLength(0);
  });
});
