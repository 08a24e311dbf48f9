import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { SandboxConfigInput } from "../config.js";
import { cgroupBases } from "../cgroup.js";
import { NamespaceBackend } from "../namespace/backend.js";
import type { TestPlatform } from "../../test-support/platform.js";

/** A backend the escape suite runs against, with what is normal for it. */
export interface BackendUnderTest {
  name: "namespace" | "microvm";
  /** Extra `sandbox` config for the test platform. */
  config: Partial<SandboxConfigInput>;
  /** The exact environment a sandboxed program sees, given the caller's variables. */
  expectedEnvKeys(user: string[]): string[];
  /** Command lines that may appear in the sandbox's own /proc. */
  ownProcess: RegExp;
  /** Waits (bounded) until no execution's process is left on the host. */
  expectNoLeftovers(p: TestPlatform): Promise<void>;
  /** This process's per-instance cgroup directories. */
  instanceDirs(): string[];
}

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

/** Processes in this process's execution cgroups, with their command lines. */
function sandboxProcesses(): string[] {
  const out: string[] = [];
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
        try {
          out.push(readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim());
        } catch {
          // exited meanwhile
        }
      }
    }
  }
  return out;
}

const namespace: BackendUnderTest = {
  name: "namespace",
  config: { namespace: { warmPool: 1 } },
  expectedEnvKeys: (user) => [...NAMESPACE_ENV, ...user].sort(),
  ownProcess:
    /^((\/usr\/bin\/)?bwrap --args 3 -- \/bin\/sh \/run\/hexr\/runner\.sh|\/usr\/bin\/python3 \/run\/hexr\/job\/main\.py)$/,
  async expectNoLeftovers() {
    // Only sandboxes waiting for an execution (blocked bwrap processes) may remain.
    let left: string[] = [];
    for (let i = 0; i < 100; i++) {
      left = sandboxProcesses().filter((c) => !/^(\S*\/)?bwrap /.test(c));
      if (left.length === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(left).toEqual([]);
  },
  instanceDirs,
};

/** The backends that work on this machine, each proven by a real probe. */
export async function availableBackends(): Promise<BackendUnderTest[]> {
  const out: BackendUnderTest[] = [];
  const ns = new NamespaceBackend({
    limits: { memoryBytes: 64 * 1024 * 1024, pids: 32, cpus: 1, tmpfsBytes: 8 * 1024 * 1024, maxOutputBytes: 65536 },
    warmPool: 0,
  });
  const h = await ns.start();
  await ns.stop();
  if (h.available) out.push(namespace);
  return out;
}
