import { HexrError, RoleName, TenantName, agentSpiffeId } from "@hexr/core";
import {
  createCheckpointedSqliteStorage,
  createStaticIdentitySource,
  signerFromSvid,
  startA2ASidecar,
  newMeshToken,
  processSelectors,
  startInboundProxy,
  startOutboundProxy,
  type InboundProxy,
  type OutboundProxy,
  type RunningA2AServer,
  type Storage,
  type TlsIdentity,
} from "@hexr/platform";
import { bootId, createIdentity, processStartTime, type Identity, type X509Svid } from "hexr";
import { mkdirSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import type { ApiClient } from "../client.js";
import { attachProcessIdentity, localPlatform, type ProcessIdentity } from "../commands/run.js";
import { discoverAgent, type DiscoveredAgent } from "../discovery/discover.js";
export { isAgentFile } from "./agent-file.js";
import { printTable } from "../output.js";
import { RoleProcess } from "./role-process.js";

export interface AgentRunOptions {
  tenant?: string;
  role?: string;
  dataDir?: string;
  json?: boolean;
  /** Seconds between registry heartbeats. */
  heartbeatSeconds?: number;
}

type RoleStatus = "starting" | "running" | "restarting" | "stopped" | "crashed";

/** What a role process tells about itself when ready (from its `hexrAgent` metadata). */
export interface ReadyMeta {
  description?: string;
  version?: string;
  skills?: Array<{ id: string; name: string; description?: string; tags?: string[]; examples?: string[] }>;
}

interface RoleState {
  role: string;
  spiffeId: string;
  meshToken: string;
  /** The inbound proxy's one upstream: the role's A2A sidecar (which passes `/invoke` to the bridge). */
  upstream: { port: number };
  /** The agent process's loopback bridge; changes when the process restarts. */
  bridgePort: number;
  a2a?: RunningA2AServer;
  a2aStorage?: Storage;
  inbound?: InboundProxy;
  outbound?: OutboundProxy;
  proc?: RoleProcess;
  identity?: ProcessIdentity;
  status: RoleStatus;
  pid: number | null;
}

function toTlsIdentity(svid: X509Svid, identity: Identity): TlsIdentity {
  return {
    spiffeId: svid.spiffeId,
    certChainPem: svid.certificates.map((c) => c.toString()).join(""),
    keyPem: svid.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    bundlePem: identity
      .x509Bundle()
      .authorities.map((c) => c.toString())
      .join(""),
    expiresAt: svid.expiresAt,
  };
}

async function ensureTenant(api: ApiClient, tenant: string, say: (s: string) => void): Promise<void> {
  try {
    await api.request("GET", `/api/v1/tenants/${tenant}`);
  } catch (err) {
    if ((err as HexrError).code !== "tenant.not_found") throw err;
    await api.request("POST", "/api/v1/tenants", { name: tenant });
    say(`created tenant ${tenant}`);
  }
}

/**
 * Runs an agent the way a pod would: one process per role (each attested and registered under its
 * own SPIFFE ID) plus its sidecars, the mTLS mesh proxies, which this supervisor hosts under the
 * same identities. Crashed role processes restart with backoff; Ctrl-C stops everything.
 */
export async function runAgentFile(file: string, o: AgentRunOptions): Promise<void> {
  const path = resolvePath(file);
  const discovered: DiscoveredAgent = discoverAgent(path);
  const tenant = o.tenant ?? process.env["HEXR_TENANT"] ?? "default";
  if (!TenantName.safeParse(tenant).success)
    throw new HexrError("cli.usage", `--tenant '${tenant}' must be a DNS label`, { kind: "invalid_argument" });
  if (o.role && !RoleName.safeParse(o.role).success)
    throw new HexrError("cli.usage", `--role '${o.role}' must be a DNS label`, { kind: "invalid_argument" });
  if (o.role && !discovered.roles.includes(o.role)) {
    throw new HexrError("cli.usage", `agent ${discovered.name} has no role ${o.role} (roles: ${discovered.roles.join(", ")})`, {
      kind: "invalid_argument",
    });
  }
  const roles = o.role ? [o.role] : discovered.roles;
  const say = (s: string) =>
    o.json ? process.stderr.write(JSON.stringify({ event: "log", message: s }) + "\n") : process.stderr.write(`hexr: ${s}\n`);
  const { api, info } = localPlatform(o.dataDir);
  await ensureTenant(api, tenant, say);

  const states = new Map<string, RoleState>(
    roles.map((role) => [
      role,
      {
        role,
        spiffeId: agentSpiffeId(info.trustDomain, tenant, discovered.name, role).toString(),
        meshToken: newMeshToken(),
        upstream: { port: 0 },
        bridgePort: 0,
        status: "starting" as RoleStatus,
        pid: null,
      },
    ]),
  );

  // The sidecars in this process hold each role's identity, pinned to this process by the kernel's pid + start time.
  const uid = process.getuid?.() ?? 0;
  const ownSelectors = [
    { type: "unix", value: `uid:${uid}` },
    ...processSelectors(process.pid, processStartTime(process.pid), bootId()),
  ];
  const sidecarEntries: string[] = [];
  for (const s of states.values()) {
    const e = await api.request<{ id: string }>("POST", "/api/v1/identity/entries", {
      spiffeId: s.spiffeId,
      selectors: ownSelectors,
      createdBy: "hexr-run-sidecar",
    });
    sidecarEntries.push(e.id);
  }
  const socket = `unix://${info.workloadSocket}`;
  const identity = createIdentity({ address: socket });
  let heartbeat: NodeJS.Timeout | undefined;
  const cleanup = async () => {
    if (heartbeat) clearInterval(heartbeat);
    await Promise.all([...states.values()].map((s) => s.proc?.stop()));
    for (const s of states.values()) {
      s.status = "stopped";
      await s.identity?.release();
      await s.inbound?.close();
      await s.outbound?.close();
      await s.a2a?.close();
      await s.a2aStorage?.close();
    }
    await sendHeartbeats().catch(() => undefined);
    identity.close();
    for (const id of sidecarEntries) await api.request("DELETE", `/api/v1/identity/entries/${id}`).catch(() => undefined);
  };

  const sendHeartbeats = async () => {
    for (const s of states.values()) {
      await api.request("POST", `/api/v1/tenants/${tenant}/agents/${discovered.name}/heartbeat`, {
        role: s.role,
        status: s.status,
        pid: s.pid,
        restarts: s.proc?.restarts ?? 0,
        endpoint: s.inbound?.url ?? null,
      });
    }
  };

  try {
    await identity.ready({ timeoutMs: 20_000 });
    const svidFor = (id: string) => {
      const svid = identity.x509Svids.find((v) => v.spiffeId === id);
      if (!svid)
        throw new HexrError("cli.no_svid", `the Workload API gave this process no SVID for ${id}`, { kind: "unavailable" });
      return svid;
    };
    const tsx = fileURLToPath(import.meta.resolve("tsx/esm"));
    const agentMain = fileURLToPath(import.meta.resolve("hexr/agent-main"));
    const resolveTarget = async (target: string) => {
      const [name, role] = target.split("/", 2);
      const r = await api.request<{ url: string; spiffeId: string }>(
        "GET",
        `/api/v1/tenants/${tenant}/agents/${encodeURIComponent(name ?? "")}/resolve${role ? `?role=${encodeURIComponent(role)}` : ""}`,
      );
      return r;
    };

    const entryRole = roles.includes(discovered.entryRole) ? discovered.entryRole : roles[0]!;
    /** The a2a-sidecar of a role, started when its process first reports its metadata; tasks persist in the data dir. */
    const startSidecar = async (s: RoleState, meta: ReadyMeta) => {
      const dir = join(info.dataDir, "a2a", tenant);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      s.a2aStorage = await createCheckpointedSqliteStorage({ filename: join(dir, `${discovered.name}-${s.role}.db`) });
      s.a2a = await startA2ASidecar({
        storage: s.a2aStorage,
        tenant,
        agent: discovered.name,
        metadata: {
          name: s.role === entryRole ? discovered.name : `${discovered.name}/${s.role}`,
          description: meta.description ?? discovered.description ?? `The ${discovered.name} agent`,
          ...(meta.version ? { version: meta.version } : {}),
          ...(meta.skills ? { skills: meta.skills.map((k) => ({ ...k, description: k.description ?? k.name })) } : {}),
          streaming: true,
        },
        bridge: { url: () => `http://127.0.0.1:${s.bridgePort}`, meshToken: s.meshToken },
        meshToken: s.meshToken,
        spiffeId: s.spiffeId,
        signer: () => signerFromSvid(svidFor(s.spiffeId)),
        publicUrl: `${s.inbound!.url}/a2a`,
        runner: "hexr-run",
        // Every A2A call from a workload is decided (and logged) by the platform's policy engine: a2a:send
        // on this role; fails closed. A caller without a SPIFFE ID can only be an API-key principal that the
        // platform's ingress (a verified system identity) vouched for after deciding the same action itself.
        authorize: async (caller, method) => {
          if (!caller.spiffeId) return;
          const d = await api.request<{ allowed: boolean; reasons: string[] }>(
            "POST",
            `/api/v1/tenants/${tenant}/policies/decide`,
            {
              principal: caller.spiffeId,
              action: "a2a:send",
              resource: { type: "Agent", id: s.spiffeId },
              context: { method },
            },
          );
          if (!d.allowed) {
            throw new HexrError("a2a.forbidden", `policy denies ${caller.spiffeId} a2a:send to ${s.spiffeId}`, {
              kind: "permission_denied",
            });
          }
        },
      });
      s.upstream.port = s.a2a.port;
      if (s.a2a.recovered.length)
        say(`role ${s.role}: ${s.a2a.recovered.length} task(s) in flight at the last stop were marked failed`);
    };

    for (const s of states.values()) {
      const source = createStaticIdentitySource(toTlsIdentity(svidFor(s.spiffeId), identity));
      identity.onUpdate(() => source.set(toTlsIdentity(svidFor(s.spiffeId), identity)));
      s.inbound = await startInboundProxy({ identity: source, upstream: s.upstream, meshToken: s.meshToken });
      s.outbound = await startOutboundProxy({ identity: source, meshToken: s.meshToken, resolve: resolveTarget });
    }

    await api.request("PUT", `/api/v1/tenants/${tenant}/agents/${discovered.name}`, {
      ...(discovered.description ? { description: discovered.description } : {}),
      framework: discovered.framework,
      entryRole,
      roles: [...states.values()].map((s) => ({ role: s.role, endpoint: s.inbound!.url, status: "starting" })),
    });

    const allReady = new Promise<void>((resolveAll) => {
      const check = () => [...states.values()].every((s) => s.status === "running") && resolveAll();
      for (const s of states.values()) {
        s.proc = new RoleProcess({
          role: s.role,
          command: process.execPath,
          args: ["--import", `file://${tsx}`, agentMain],
          env: {
            ...process.env,
            SPIFFE_ENDPOINT_SOCKET: socket,
            HEXR_PLATFORM_URL: info.url,
            HEXR_TENANT: tenant,
            HEXR_AGENT_NAME: discovered.name,
            HEXR_ROLE: s.role,
            HEXR_FRAMEWORK: discovered.framework,
            HEXR_AGENT_MODULE: path,
            HEXR_MESH_TOKEN: s.meshToken,
            HEXR_MESH_OUTBOUND: s.outbound!.url,
            HEXR_BRIDGE_PORT: "0",
          },
          onLine: (line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(line + "\n"),
          onSpawn: async (child) => {
            s.pid = child.pid ?? null;
            s.identity = await attachProcessIdentity({
              api,
              info,
              pid: child.pid!,
              tenant,
              agent: discovered.name,
              role: s.role,
            });
          },
          onReady: ({ bridgePort, spiffeId, meta }) => {
            s.bridgePort = bridgePort;
            if (spiffeId !== s.spiffeId) say(`warning: role ${s.role} attested as ${spiffeId}, expected ${s.spiffeId}`);
            const sidecar = s.a2a ? Promise.resolve() : startSidecar(s, meta);
            sidecar.then(
              () => {
                s.status = "running";
                void sendHeartbeats().catch(() => undefined);
                check();
              },
              (err: unknown) => {
                say(`role ${s.role}: the A2A sidecar failed to start: ${(err as Error).message}`);
                s.proc?.child?.kill("SIGTERM");
              },
            );
          },
          onExit: () => {
            const old = s.identity;
            s.identity = undefined;
            void old?.release();
          },
          onCrash: (code, signal, restarts, delay) => {
            s.status = "restarting";
            s.pid = null;
            say(`role ${s.role} exited (${signal ?? `code ${code}`}); restart #${restarts} in ${delay} ms`);
            void sendHeartbeats().catch(() => undefined);
          },
        });
        s.proc.start();
      }
    });
    await Promise.race([
      allReady,
      new Promise((_, reject) =>
        setTimeout(
          () =>
            reject(
              new HexrError(
                "cli.agent_start_timeout",
                "the agent's roles did not become ready within 60 s; see their output above",
                { kind: "timeout" },
              ),
            ),
          60_000,
        ).unref(),
      ),
    ]);
    heartbeat = setInterval(() => void sendHeartbeats().catch(() => undefined), (o.heartbeatSeconds ?? 5) * 1000);

    const rows = [...states.values()].map((s) => ({ role: s.role, spiffeId: s.spiffeId, endpoint: s.inbound!.url, pid: s.pid }));
    if (o.json) process.stdout.write(JSON.stringify({ event: "ready", agent: discovered.name, tenant, roles: rows }) + "\n");
    else {
      process.stderr.write(`\nhexr: agent ${discovered.name} is running in tenant ${tenant} (Ctrl-C stops it)\n`);
      printTable(rows, ["role", "spiffeId", "endpoint", "pid"]);
      process.stderr.write(`\n  try:  hexr agents --tenant ${tenant}\n\n`);
    }
    await new Promise<void>((resolveStop) => {
      let signals = 0;
      const onSignal = () => {
        if (++signals > 1) process.exit(130);
        resolveStop();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
    });
    say("stopping");
  } finally {
    await cleanup();
  }
}
