import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { trackCaller } from "./caller.js";
import { readProcStat } from "./proc.js";

let dir: string;
let server: Server;
let sockPath: string;
let child: ChildProcess | undefined;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "hexr-caller-"));
  sockPath = join(dir, "s.sock");
  server = createServer();
  await new Promise<void>((r) => server.listen(sockPath, r));
});

afterEach(async () => {
  child?.kill("SIGKILL");
  child = undefined;
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function childConnection(): Promise<{ sock: Socket; child: ChildProcess }> {
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  child = spawn(process.execPath, ["-e", `require("net").connect(${JSON.stringify(sockPath)}); setInterval(() => {}, 1000)`], {
    stdio: "ignore",
  });
  return { sock: await accepted, child };
}

describe("trackCaller", () => {
  it("records the connecting process and its start time, and it stays verifiable while it lives", async () => {
    const { sock, child } = await childConnection();
    const caller = trackCaller(sock);
    expect(caller.pid).toBe(child.pid);
    expect(caller.startTime).toBe((await readProcStat(child.pid!)).startTime);
    expect(() => caller.assertAlive()).not.toThrow();
    caller.close();
    expect(() => caller.assertAlive()).toThrow(expect.objectContaining({ code: "identity.caller_gone" }));
    sock.destroy();
  });

  it("fails once the connecting process has exited, even though the server side of the socket is open", async () => {
    const { sock, child } = await childConnection();
    const caller = trackCaller(sock);
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    expect(() => caller.assertAlive()).toThrow(expect.objectContaining({ code: "identity.caller_gone" }));
    caller.close();
    sock.destroy();
  });

  it("fails when the pid's start time changes (pid reused) or its uid changes", async () => {
    const { sock, child } = await childConnection();
    const procRoot = join(dir, "proc");
    const pdir = join(procRoot, String(child.pid));
    mkdirSync(pdir, { recursive: true });
    // /proc files report size 0, so copy by reading (copy_file_range would copy nothing).
    const copy = (f: string) => writeFileSync(join(pdir, f), readFileSync(`/proc/${child.pid}/${f}`));
    copy("stat");
    copy("status");
    const caller = trackCaller(sock, { procRoot });
    expect(() => caller.assertAlive()).not.toThrow();

    const stat = readFileSync(join(pdir, "stat"), "utf8");
    const close = stat.lastIndexOf(")");
    const rest = stat.slice(close + 2).split(" ");
    rest[19] = String(Number(rest[19]) + 1);
    writeFileSync(join(pdir, "stat"), stat.slice(0, close + 2) + rest.join(" "));
    expect(() => caller.assertAlive()).toThrow(/another process/);

    copy("stat");
    expect(() => caller.assertAlive()).not.toThrow();
    const status = readFileSync(join(pdir, "status"), "utf8").replace(/^Uid:.*$/m, "Uid:\t0\t4242\t0\t0");
    writeFileSync(join(pdir, "status"), status);
    expect(() => caller.assertAlive()).toThrow(/uid or gid/);
    caller.close();
    sock.destroy();
  });
});
