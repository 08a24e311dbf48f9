import { z } from "zod";
import { parseAllowedHost } from "./egress-proxy.js";

const MiB = 1024 * 1024;

/** An http(s) URL; credentials (a private mirror's token) are allowed and never shown in messages. */
const IndexUrl = z.string().refine(
  (v) => {
    try {
      return ["http:", "https:"].includes(new URL(v).protocol);
    } catch {
      return false;
    }
  },
  { message: "must be an http:// or https:// URL" },
);

/** `host` or `host:port` the package installer may reach besides the index itself. */
const AllowHost = z.string().refine(
  (v) => {
    try {
      parseAllowedHost(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: "must be a host name or address, optionally with :port (no scheme, no path)" },
);

/** Further hosts the installer may reach, e.g. files.pythonhosted.org for PyPI (the index host always may). */
const AllowHosts = z.array(AllowHost).max(64).default([]);

/** The name of one of the platform's environment variables (a secret is never written in the config file). */
const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable's name");

/** A python index, with HTTP Basic credentials for a private one (the password from the platform's environment). */
const PythonIndex = z
  .strictObject({
    indexUrl: IndexUrl,
    allowHosts: AllowHosts,
    /** The user name for a private index (e.g. `aws` for CodeArtifact, `__token__` for an API token). */
    username: z.string().min(1).max(256).optional(),
    /** The environment variable holding the password or token; read at each fetch, never logged. */
    passwordEnv: EnvName.optional(),
  })
  .superRefine((v, ctx) => {
    if ((v.username === undefined) !== (v.passwordEnv === undefined)) {
      ctx.addIssue({ code: "custom", path: ["passwordEnv"], message: "username and passwordEnv go together" });
    }
    if (v.passwordEnv && hasUserinfo(v.indexUrl)) {
      ctx.addIssue({
        code: "custom",
        path: ["indexUrl"],
        message: "has credentials of its own: use username and passwordEnv, not both",
      });
    }
  });

/** An npm registry, with a token for a private one (from the platform's environment). */
const NpmRegistry = z.strictObject({
  registry: IndexUrl,
  allowHosts: AllowHosts,
  /** The environment variable holding the registry's auth token (npm's `_authToken`, sent as a Bearer token); read at each fetch, never logged. */
  tokenEnv: EnvName.optional(),
});

function hasUserinfo(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== "" || u.password !== "";
  } catch {
    return false;
  }
}

/** The `sandbox` section of the platform config. Limits apply to every execution. */
export const SandboxConfig = z.strictObject({
  /** false: the service answers every execution with `sandbox.disabled`. */
  enabled: z.boolean().default(true),
  /** `auto` = namespace where it works, else microvm; a named backend is used or nothing (no fallback). */
  backend: z.enum(["auto", "namespace", "microvm"]).default("auto"),
  /** Executions that run at once; the rest wait in a queue. */
  maxConcurrent: z.number().int().min(1).max(256).default(4),
  /** Executions that may wait; beyond this, `sandbox.busy` (503). */
  maxQueue: z.number().int().min(0).max(10_000).default(64),
  maxTimeoutSeconds: z.number().positive().max(3600).default(300),
  maxCodeBytes: z.number().int().min(1024).max(MiB).default(MiB),
  /** Per stream (stdout, stderr); the rest is dropped and a marker says how much. */
  maxOutputBytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * MiB)
    .default(MiB),
  memoryMb: z
    .number()
    .int()
    .min(32)
    .max(64 * 1024)
    .default(512),
  /** Processes + threads per execution. */
  pids: z.number().int().min(8).max(65_536).default(256),
  /** CPU quota in cores (0.5 = half a core). */
  cpus: z.number().positive().max(256).default(1),
  /** Size of the private writable /tmp (RAM-backed, counted in memoryMb). */
  tmpfsMb: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024)
    .default(128),
  /** Seconds the package installation step may take, on top of the execution timeout. */
  installTimeoutSeconds: z.number().positive().max(3600).default(300),
  packages: z
    .strictObject({
      /**
       * A PEP 503 simple index (https://pypi.org/simple or a mirror). Packages are downloaded per
       * execution as wheels only (never built from source), in a confined fetch sandbox whose only
       * egress is to this index's host and `allowHosts`. Wins over `pythonDir`.
       */
      python: PythonIndex.optional(),
      /** An npm registry (https://registry.npmjs.org or a mirror), installed with `--ignore-scripts`. Wins over `npmDir`. */
      npm: NpmRegistry.optional(),
      /**
       * pip's and npm's download caches. Default `<dataDir>/sandbox/package-cache`, or
       * `/var/cache/hexr/packages` when the platform runs as root (the fetch runs as uid 65534,
       * which must be able to reach it).
       */
      cacheDir: z.string().min(1).optional(),
      /** PEM certificate(s) of CAs trusted for the indexes besides the public ones, e.g. a mirror behind an internal CA. */
      caFile: z.string().min(1).optional(),
      /** The caches' size cap: after fetches (at most once a minute), the least recently used files go until they hold 90% of it. */
      cacheMaxMb: z
        .number()
        .int()
        .min(64)
        .max(1024 * 1024)
        .default(4096),
      /** A directory of wheels (and sdists) for `pip install --no-index --find-links`. */
      pythonDir: z.string().min(1).optional(),
      /** A directory of npm tarballs as `npm pack` names them (`<name>-<version>.tgz`, `<scope>-<name>-<version>.tgz`). */
      npmDir: z.string().min(1).optional(),
    })
    .prefault({}),
  namespace: z
    .strictObject({
      bwrapPath: z.string().min(1).default("bwrap"),
      /** The host uid/gid sandboxed code runs as when the platform runs as root. */
      uid: z
        .number()
        .int()
        .min(1)
        .max(2 ** 31)
        .default(65534),
      gid: z
        .number()
        .int()
        .min(1)
        .max(2 ** 31)
        .default(65534),
      /** `required`: no execution without a per-execution cgroup. `optional`: run with rlimits only (doctor warns). */
      cgroups: z.enum(["required", "optional"]).default("required"),
      /** Sandboxes kept set up and waiting for an execution (each serves exactly one). */
      warmPool: z.number().int().min(0).max(64).default(2),
      /**
       * Sandboxes fork from zygotes into fresh namespaces: python executions from a per-tenant zygote
       * interpreter (about half the CPU per execution of a new interpreter each), the others from
       * hexr-zygote, which execs the runner; `false` = a bubblewrap process per sandbox.
       */
      forkServer: z.boolean().default(true),
    })
    .prefault({}),
  microvm: z
    .strictObject({
      /** Where `hexr sandbox setup` puts the kernel and initramfs; default `<dataDir>/sandbox/microvm`. */
      imageDir: z.string().min(1).optional(),
      qemuPath: z.string().min(1).default("qemu-system-x86_64"),
      /** `auto` probes KVM with a real boot and falls back to TCG. */
      accel: z.enum(["auto", "kvm", "tcg"]).default("auto"),
      memoryMb: z
        .number()
        .int()
        .min(64)
        .max(16 * 1024)
        .default(256),
      /** Pre-restored clones kept ready. */
      poolSize: z.number().int().min(0).max(32).default(2),
    })
    .prefault({}),
});
export type SandboxConfig = z.infer<typeof SandboxConfig>;
export type SandboxConfigInput = z.input<typeof SandboxConfig>;
