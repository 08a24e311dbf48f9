/**
 * The addon's descriptor passing (native/src/fdpass.c), which the python fork server's control
 * socket uses: a descriptor sent by the platform works in the receiving process; bad arguments and
 * a gone peer are errors, not silent drops.
 */

import { spawn } from "node:child_process";
import { closeSync, readSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { nativeBinding } from "../../native.js";

describe("descriptor passing", () => {
  const native = nativeBinding();

  it("hands a pipe's write end to another process, which writes through it", async () => {
    const [ours, theirs] = native.seqpacketPair();
    const [r, w] = native.pipe();
    // The receiver gets the socket as fd 3 and writes what it received on the descriptor that came with it.
    const child = spawn(
      "/usr/bin/python3",
      [
        "-c",
        "import os, socket\ns = socket.socket(fileno=3)\nmsg, fds, _, _ = socket.recv_fds(s, 100, 4)\nos.write(fds[0], msg)\nprint(len(fds))",
      ],
      { stdio: ["ignore", "pipe", "inherit", theirs] },
    );
    closeSync(theirs);
    native.sendFds(ours, Buffer.from("through the passed fd"), [w]);
    closeSync(w);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code).toBe(0);
    expect(out).toBe("1\n");
    const buf = Buffer.alloc(100);
    const n = readSync(r, buf);
    expect(buf.subarray(0, n).toString()).toBe("through the passed fd");
    closeSync(r);
    closeSync(ours);
  });

  it("refuses bad arguments and says when the peer is gone", () => {
    const [ours, theirs] = native.seqpacketPair();
    expect(() => native.sendFds(ours, Buffer.alloc(0), [0])).toThrow(/sendFds\(socket: fd, data: non-empty Buffer/);
    expect(() => native.sendFds(ours, Buffer.from("x"), [])).toThrow(/fds: fd\[\] \(1-16\)/);
    expect(() => native.sendFds(ours, Buffer.from("x"), [-1])).toThrow(/hexr\.native_bad_argument|sendFds/);
    closeSync(theirs);
    let err: (Error & { errno?: number }) | undefined;
    try {
      native.sendFds(ours, Buffer.from("x"), [0]);
    } catch (e) {
      err = e as Error & { errno?: number };
    }
    expect(err?.message).toMatch(/^sendmsg: /);
    expect(err?.errno).toBe(32); // EPIPE
    closeSync(ours);
  });

  it("never blocks: a full queue is EAGAIN", () => {
    const [ours, theirs] = native.seqpacketPair();
    let err: (Error & { errno?: number }) | undefined;
    try {
      for (let i = 0; i < 100_000; i++) native.sendFds(ours, Buffer.alloc(4096), [0]);
    } catch (e) {
      err = e as Error & { errno?: number };
    }
    expect(err?.errno).toBe(11); // EAGAIN
    closeSync(theirs);
    closeSync(ours);
  });
});
