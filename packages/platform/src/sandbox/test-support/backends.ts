import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { SandboxConfigInput } from "../config.js";
import { cgroupBases } from "../cgroup.js";
import { MicrovmBackend } from "../microvm/backend.js";
import { qemuVersion, readMeta, setupMicrovm, staleImage } from "../microvm/setup.js";
import { NamespaceBackend } from "../namespace/backend.js";
import type { TestPlatform } from "../../test-support/platform.js";

/** A backend the escape suite runs against, with what is normal for it. */
export interface BackendUnderTest {
  name: "namespace" | "microvm";
  /** What the suite's title calls it (a backend may be run in more than one way). */
  label: string;
  /** Extra `sandbox` config for the test platform. */
  config: Partial<SandboxConfigInput>;
  /** The exact environment a sandboxed program sees, given the caller's variables. */
  expectedEnvKeys(user: string[]): string[];
  /** Command lines that may appear in the sandbox's own /proc. */
  ownProcess: RegExp;
  /** What setuid(0) fails with: EINVAL where uid 0 is unmapped (user namespace), EPERM where it exists. */
  setuidRootError: string;
  /** Waits (bounded) until no execution's process is left on the host. */
  expectNoLeftovers(p: TestPlatform): Promise<void>;
  /** This process's per-instance cgroup directories. */
  instanceDirs(): string[];
}

/** Command lines of a warm namespace sandbox's process that waits for its job. */
const WAITING = ["/bin/sh /run/hexr/runner.sh", "/usr/bin/python3 /run/hexr/job/main.py"];

const NAMESPACE_ENV = ["HOME", "LANG", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "TMPDIR", "USER"];

function instanceDirs(): string[] {
  const out: string[] = [];
  for (const base of cgroupBases()) {
    let names: string[] = [];
    try {
      names = readdirSync(base);
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith(`hexr-sandbox-${process.pid}-`)) out.push(join(base, n));
  }
  return out;
}

/** Processes in this process's execution cgroups (each once, though v1 lists it per controller), with their command lines and cgroup. */
function sandboxProcesses(): Array<{ pid: string; cmd: string; comm: string; cgroup: string }> {
  const seen = new Set<string>();
  const out: Array<{ pid: string; cmd: string; comm: string; cgroup: string }> = [];
  for (const dir of instanceDirs()) {
    if (!existsSync(dir)) continue;
    for (const child of readdirSync(dir, { withFileTypes: true })) {
      if (!child.isDirectory()) continue;
      let pids: string[] = [];
      try {
        pids = readFileSync(join(dir, child.name, "cgroup.procs"), "utf8")
          .split("\n")
          .filter(Boolean);
      } catch {
        continue;
      }
      for (const pid of pids) {
        if (seen.has(pid)) continue;
        seen.add(pid);
        try {
          out.push({
            pid,
            cmd: readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim(),
            comm: readFileSync(`/proc/${pid}/comm`, "utf8").trim(),
            cgroup: child.name,
          });
        } catch {
          // exited meanwhile
        }
      }
    }
  }
  return out;
}

/**
 * Only sandboxes waiting for an execution may remain: bwrap, and a runner or a python stub that still
 * waits for its go on fd 7 (each closes fd 7 before it reads a job), with whatever else is in that
 * sandbox's cgroup (a forked sandbox's init); and the fork server's zygotes.
 */
async function namespaceLeftovers(): Promise<void> {
  let left: string[] = [];
  for (let i = 0; i < 100; i++) {
    const procs = sandboxProcesses();
    const waiting = new Set(
      procs.filter(({ pid, cmd }) => WAITING.includes(cmd) && existsSync(`/proc/${pid}/fd/7`)).map((p) => p.cgroup),
    );
    left = procs
      .filter(({ cmd, comm, cgroup }) => !/^(\S*\/)?bwrap /.test(cmd) && comm !== "hexr-zygote" && !waiting.has(cgroup))
      .map((p) => `${p.cmd} (${p.comm}, cgroup ${p.cgroup})`);
    if (left.length === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(left).toEqual([]);
}

const namespace: BackendUnderTest = {
  name: "namespace",
  label: "namespace (fork server)",
  config: { namespace: { warmPool: 1 } },
  expectedEnvKeys: (user) => [...NAMESPACE_ENV, ...user].sort(),
  // bubblewrap's init and its child; a forked sandbox's init (hexr-init <status fd> <code pid>) and python.
  ownProcess:
    /^((\/usr\/bin\/)?bwrap --args 3 -- (\/bin\/sh \/run\/hexr\/runner\.sh|\/usr\/bin\/python3 \/run\/hexr\/job\/main\.py)|\/usr\/bin\/python3 \/run\/hexr\/job\/main\.py|hexr-init \d+ 2)$/,
  setuidRootError: "EINVAL",
  expectNoLeftovers: namespaceLeftovers,
  instanceDirs,
};

/** The namespace backend with the fork server off: every sandbox a bubblewrap process of its own. */
const namespaceFresh: BackendUnderTest = {
  ...namespace,
  label: "namespace (a bubblewrap process per sandbox)",
  config: { namespace: { warmPool: 1, forkServer: false } },
};

/** The image the microvm suite uses: `HEXR_TEST_MICROVM_IMAGE`, else what `hexr sandbox setup` built for ~/.hexr. */
export const TEST_MICROVM_IMAGE = process.env["HEXR_TEST_MICROVM_IMAGE"] ?? join(homedir(), ".hexr", "sandbox", "microvm");
const MICROVM_POOL = 1;

const microvm: BackendUnderTest = {
  name: "microvm",
  label: "microvm",
  config: { microvm: { imageDir: TEST_MICROVM_IMAGE, poolSize: MICROVM_POOL } },
  expectedEnvKeys: (user) => [...NAMESPACE_ENV, ...user].sort(),
  // hidepid=2 in the guest: the code sees its own processes only.
  ownProcess: /^\/usr\/bin\/python3 \/run\/hexr\/job\/main\.py$/,
  setuidRootError: "EPERM",
  async expectNoLeftovers() {
    // Only clones waiting in the pool may remain (each VM is one QEMU process in its own cgroup).
    let left: string[] = [];
    for (let i = 0; i < 200; i++) {
      left = sandboxProcesses().map((p) => p.cmd);
      if (left.length <= MICROVM_POOL && left.every((c) => c.startsWith("qemu-system"))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(left.length, left.join("\n")).toBeLessThanOrEqual(MICROVM_POOL);
  },
  instanceDirs,
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Builds the test image with `hexr sandbox setup`'s code when it is missing or was made by another
 * QEMU, so the microvm suites always run (they need qemu-system-x86 and the Debian mirror). Test
 * files in parallel processes take turns through a lock directory.
 */
export async function ensureMicrovmImage(image = TEST_MICROVM_IMAGE): Promise<void> {
  const lock = `${image}.lock`;
  mkdirSync(join(image, ".."), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "pid"), String(process.pid));
      break;
    } catch {
      let owner = NaN;
      try {
        owner = Number(readFileSync(join(lock, "pid"), "utf8"));
      } catch {
        // being created
      }
      if (Number.isInteger(owner) && !alive(owner)) rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    const meta = readMeta(image);
    const current = meta ? await qemuVersion("qemu-system-x86_64").catch(() => "") : "";
    // Rebuilt when missing, made by another QEMU, or in an older format of Hexr's.
    if (!meta || staleImage(meta, current)) await setupMicrovm({ imageDir: image });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The backends that work on this machine, each proven by a real probe. */
export async function availableBackends(): Promise<BackendUnderTest[]> {
  const out: BackendUnderTest[] = [];
  const ns = new NamespaceBackend({
    limits: { memoryBytes: 64 * 1024 * 1024, pids: 32, cpus: 1, tmpfsBytes: 8 * 1024 * 1024, maxOutputBytes: 65536 },
    warmPool: 0,
  });
  const h = await ns.start();
  await ns.stop();
  if (h.available) out.push(namespace, namespaceFresh);
  await ensureMicrovmImage();
  const mv = new MicrovmBackend({
    imageDir: TEST_MICROVM_IMAGE,
    limits: { memoryBytes: 64 * 1024 * 1024, pids: 32, cpus: 1, tmpfsBytes: 8 * 1024 * 1024, maxOutputBytes: 65536 },
    poolSize: 0,
  });
  const m = await mv.start();
  await mv.stop();
  if (m.available) out.push(microvm);
  return out;
}
