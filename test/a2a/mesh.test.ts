/**
 * Agent to agent over the mesh, as `hexr run` lays out a pod: the researcher's SDK client sends by
 * name to its outbound proxy, which connects over mTLS (researcher's SVID, writer's SPIFFE ID
 * verified) to the writer's inbound proxy, whose one upstream is the writer's a2a-sidecar; the
 * sidecar keeps the task and runs the writer's handler in its process through the bridge, and
 * forwards the bridge's own `/invoke` calls unchanged.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signerFromSvid } from "../../packages/platform/src/a2a/card.js";
import { startA2ASidecar } from "../../packages/platform/src/a2a/sidecar.js";
import type { RunningA2AServer } from "../../packages/platform/src/a2a/server.js";
import { authorityFixture, type AuthorityFixture } from "../../packages/platform/src/identity/authority/test-support/fixtures.js";
import { startInboundProxy, type InboundProxy } from "../../packages/platform/src/mesh/inbound.js";
import { startOutboundProxy, type OutboundProxy } from "../../packages/platform/src/mesh/outbound.js";
import { createStaticIdentitySource, derToPem, type TlsIdentity } from "../../packages/platform/src/mesh/svid.js";
import { newMeshToken } from "../../packages/platform/src/mesh/token.js";
import { createSqliteStorage } from "../../packages/platform/src/storage/sqlite.js";
import type { Storage } from "../../packages/platform/src/storage/types.js";
import { startBridge } from "../../packages/sdk/src/agent/bridge.js";
import { meshInvoke } from "../../packages/sdk/src/agent/call.js";
import type { AgentContext } from "../../packages/sdk/src/agent/define.js";
import { a2aText, createA2AClient, meshResolver, type A2ATask } from "../../packages/sdk/src/a2a/index.js";

const WRITER = "spiffe://hexr.local/agent/acme/writer/main";
const RESEARCHER = "spiffe://hexr.local/agent/acme/researcher/main";

let f: AuthorityFixture;
let dir: string;
let storage: Storage;
let bridge: Awaited<ReturnType<typeof startBridge>>;
let sidecar: RunningA2AServer;
let inbound: InboundProxy;
let outbound: OutboundProxy;
let researcherToken = "";
const calls: Array<{ input: unknown; caller: string | undefined; taskId: string | undefined }> = [];

beforeAll(async () => {
  f = await authorityFixture();
  dir = mkdtempSync(join(tmpdir(), "hexr-a2a-mesh-"));
  storage = createSqliteStorage({ filename: join(dir, "writer-a2a.db") });
  const identity = async (spiffeId: string): Promise<TlsIdentity> => {
    const s = await f.authority.mintX509Svid(spiffeId);
    return {
      spiffeId,
      certChainPem: s.certChainDer.map((d) => derToPem(d)).join(""),
      keyPem: derToPem(s.privateKeyPkcs8Der, "PRIVATE KEY"),
      bundlePem: f.authority
        .x509Authorities()
        .map((d) => derToPem(d))
        .join(""),
      expiresAt: s.expiresAt,
    };
  };
  // The writer's pod: its process (the bridge), its sidecar, its inbound proxy; one mesh token.
  const writerToken = newMeshToken();
  bridge = await startBridge({
    meshToken: writerToken,
    handler: async (input, ctx) => {
      calls.push({ input, caller: ctx.caller, taskId: ctx.taskId });
      return `an article about ${String(input)}`;
    },
    context: (c) =>
      ({
        ...c,
        spiffeId: WRITER,
        tenant: "acme",
        agent: "writer",
        role: "main",
        call: async () => undefined,
      }) as unknown as AgentContext,
  });
  sidecar = await startA2ASidecar({
    storage,
    tenant: "acme",
    agent: "writer",
    metadata: { name: "writer", description: "Writes articles", skills: [{ id: "write", name: "Write", description: "writes" }] },
    bridge: { url: () => `http://127.0.0.1:${bridge.port}`, meshToken: writerToken },
    meshToken: writerToken,
    spiffeId: WRITER,
    signer: signerFromSvid(await f.authority.mintX509Svid(WRITER)),
  });
  inbound = await startInboundProxy({
    identity: createStaticIdentitySource(await identity(WRITER)),
    upstream: { port: sidecar.port },
    meshToken: writerToken,
  });
  // The researcher's pod: its outbound proxy, resolving "writer" as the registry would.
  researcherToken = newMeshToken();
  outbound = await startOutboundProxy({
    identity: createStaticIdentitySource(await identity(RESEARCHER)),
    meshToken: researcherToken,
    resolve: async (target) => {
      if (target !== "writer") throw new Error(`unknown ${target}`);
      return { url: inbound.url, spiffeId: WRITER };
    },
  });
});

afterAll(async () => {
  await outbound?.close();
  await inbound?.close();
  await sidecar?.close();
  await bridge?.close();
  await storage?.close();
  await f?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("A2A over the mTLS mesh", () => {
  const a2a = () =>
    createA2AClient({ resolve: meshResolver({ HEXR_MESH_OUTBOUND: outbound.url, HEXR_MESH_TOKEN: researcherToken }) });

  it("the researcher calls the writer by name; the writer sees the researcher's verified SPIFFE ID", async () => {
    const r = (await a2a().send("writer", "SPIFFE")) as A2ATask;
    expect(r.status.state).toBe("TASK_STATE_COMPLETED");
    expect(a2aText(r)).toBe("an article about SPIFFE");
    expect(calls[calls.length - 1]).toEqual({ input: "SPIFFE", caller: RESEARCHER, taskId: r.id });
    const again = await a2a().getTask("writer", r.id);
    expect(again.id).toBe(r.id);
  });

  it("streams across the mesh", async () => {
    const kinds: string[] = [];
    for await (const e of a2a().stream("writer", "mTLS")) kinds.push(e.kind);
    expect(kinds).toEqual(["task", "artifact-update", "status-update"]);
  });

  it("the writer's card through the mesh is signed by the writer's SVID", async () => {
    const card = await a2a().card("writer", {
      verify: { trustAnchors: f.authority.x509Authorities(), expectedSpiffeId: WRITER },
    });
    expect(card["name"]).toBe("writer");
    await expect(
      a2a().card("writer", { verify: { trustAnchors: f.authority.x509Authorities(), expectedSpiffeId: RESEARCHER } }),
    ).rejects.toMatchObject({
      code: "a2a.card_signature_invalid",
    });
  });

  it("the bridge's own /invoke still works behind the sidecar (one upstream for the inbound proxy)", async () => {
    const out = await meshInvoke<string>("writer", "plain call", { outboundUrl: outbound.url, meshToken: researcherToken });
    expect(out).toBe("an article about plain call");
    expect(calls[calls.length - 1]).toMatchObject({ input: "plain call", caller: RESEARCHER });
  });

  it("a caller that skips the mesh is refused by the sidecar", async () => {
    const direct = createA2AClient({ resolve: () => ({ url: sidecar.url }) });
    await expect(direct.send("writer", "sneaky")).rejects.toMatchObject({ code: "a2a.unauthenticated" });
  });
});
