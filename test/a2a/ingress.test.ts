/**
 * The platform's A2A ingress end to end: callers without an SVID (API keys, the official SDK, the
 * Hexr client) and workloads with a JWT-SVID call an agent at /a2a/<tenant>/<agent>; the platform
 * resolves it in the registry and relays over mTLS (its own SVID, the agent's SPIFFE ID verified)
 * through the agent's inbound mesh proxy to its A2A server, with the caller recorded; policy decides.
 */
import { Role, TaskState, type SendMessageRequest, type Task } from "@a2a-js/sdk";
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyCardSignature } from "../../packages/platform/src/a2a/card.js";
import { startTestPlatform, type TestPlatform } from "../../packages/platform/src/test-support/platform.js";
import { a2aText, createA2AClient, type A2ATask } from "../../packages/sdk/src/a2a/index.js";
import { startMeshedAgent, type MeshedAgent } from "./agent-fixture.js";

const WRITER = "spiffe://hexr.local/agent/acme/writer/main";
const RESEARCHER = "spiffe://hexr.local/agent/acme/researcher/main";
const INTRUDER = "spiffe://hexr.local/agent/acme/intruder/main";
const INGRESS = "spiffe://hexr.local/system/a2a";

let p: TestPlatform;
let meshed: MeshedAgent;
let tenantKey = "";
let otherTenantKey = "";
const seen: Array<{ caller: string; spiffeId: string | null }> = [];

const text = (value: string): SendMessageRequest =>
  ({
    tenant: "",
    message: {
      messageId: randomUUID(),
      role: Role.ROLE_USER,
      parts: [{ content: { $case: "text", value }, filename: "", mediaType: "", metadata: undefined }],
      contextId: "",
      taskId: "",
      extensions: [],
      referenceTaskIds: [],
      metadata: undefined,
    },
    configuration: undefined,
    metadata: undefined,
  }) as SendMessageRequest;

beforeAll(async () => {
  p = await startTestPlatform();
  const api = async (path: string, init: Parameters<TestPlatform["api"]>[1] = {}) => {
    const r = await p.api(path, init);
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    const body = await r.text();
    return (body ? JSON.parse(body) : {}) as Record<string, unknown>;
  };
  await api("/api/v1/tenants", { method: "POST", json: { name: "acme" } });
  await api("/api/v1/tenants", { method: "POST", json: { name: "globex" } });
  tenantKey = (await api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "acme", name: "ci" } }))[
    "key"
  ] as string;
  otherTenantKey = (await api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "globex", name: "ci" } }))[
    "key"
  ] as string;

  meshed = await startMeshedAgent(p, {
    tenant: "acme",
    name: "writer",
    description: "Writes articles",
    handler: async function* (m, ctx) {
      seen.push({ caller: ctx.caller, spiffeId: ctx.callerSpiffeId });
      yield "article about ";
      yield m.parts[0]?.text ?? "";
      return undefined;
    },
  });
  await api("/api/v1/tenants/acme/policies/no-intruder", {
    method: "PUT",
    json: {
      policy: `forbid (principal == Hexr::Agent::"${INTRUDER}", action == Hexr::Action::"a2a:send", resource);`,
      mode: "enforce",
    },
  });
});

afterAll(async () => {
  await meshed?.close();
  await p?.dispose();
});

const ingressUrl = () => `${p.url}/a2a/acme/writer`;
const bearer =
  (token: string): typeof fetch =>
  (input, init = {}) =>
    fetch(input, {
      ...init,
      headers: { ...Object.fromEntries(new Headers(init.headers).entries()), authorization: `Bearer ${token}` },
    });

describe("the A2A ingress", () => {
  it("serves the agent's own signed card, advertising the ingress URL and bearer auth", async () => {
    const res = await fetch(`${ingressUrl()}/.well-known/agent-card.json`, {
      headers: { authorization: `Bearer ${tenantKey}`, "a2a-version": "1.0" },
    });
    expect(res.status).toBe(200);
    const card = (await res.json()) as Record<string, unknown>;
    expect(card["supportedInterfaces"]).toEqual([
      { url: ingressUrl(), protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: ingressUrl(), protocolBinding: "JSONRPC", protocolVersion: "0.3" },
    ]);
    expect(Object.keys(card["securitySchemes"] as object)).toEqual(["hexr-bearer"]);
    // Signed by the agent's SVID, not the platform's: the caller can check whose card it is.
    expect(
      verifyCardSignature(card, { trustAnchors: p.identity.authority.x509Authorities(), expectedSpiffeId: WRITER }).spiffeId,
    ).toBe(WRITER);
    const legacy = (await (
      await fetch(`${ingressUrl()}/.well-known/agent.json`, { headers: { authorization: `Bearer ${tenantKey}` } })
    ).json()) as Record<string, unknown>;
    expect(legacy).toMatchObject({ url: ingressUrl(), protocolVersion: "0.3.0" });
  });

  it("lets the official SDK call the agent with an API key (send, stream, get, cancel), recording the key as the caller", async () => {
    const fetchImpl = bearer(tenantKey);
    const client = await new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
        transports: [new JsonRpcTransportFactory({ fetchImpl })],
      }),
    ).createFromUrl(p.url, "/a2a/acme/writer/.well-known/agent-card.json");
    const task = (await client.sendMessage(text("SPIFFE"))) as Task;
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(task.artifacts[0]!.parts.map((x) => (x.content?.$case === "text" ? x.content.value : "")).join("")).toBe(
      "article about SPIFFE",
    );
    expect(seen[seen.length - 1]).toMatchObject({ caller: expect.stringMatching(/^apikey:/), spiffeId: null });
    const events: string[] = [];
    for await (const e of client.sendMessageStream(text("mTLS"))) events.push(e.payload!.$case);
    expect(events).toEqual(["task", "artifactUpdate", "artifactUpdate", "statusUpdate"]);
    expect((await client.getTask({ tenant: "", id: task.id, historyLength: undefined })).id).toBe(task.id);
    await expect(client.cancelTask({ tenant: "", id: task.id, metadata: undefined })).rejects.toMatchObject({
      name: "TaskNotCancelableError",
    });
  });

  it("lets the Hexr client call it too, and scopes ListTasks to the caller (admins see all)", async () => {
    const viaIngress = (token: string) =>
      createA2AClient({
        resolve: (name) => ({
          url: `${p.url}/a2a/acme/${name}`,
          cardUrl: `${p.url}/a2a/acme/${name}/.well-known/agent-card.json`,
          headers: { authorization: `Bearer ${token}` },
        }),
      });
    const r = (await viaIngress(tenantKey).send("writer", "Hexr")) as A2ATask;
    expect(a2aText(r)).toBe("article about Hexr");
    const mine = await viaIngress(tenantKey).listTasks("writer");
    const all = await viaIngress(p.adminKey).listTasks("writer");
    expect(mine.totalSize).toBeGreaterThanOrEqual(3);
    expect(mine.tasks.every((t) => t.id)).toBe(true);
    const adminOwn = (await viaIngress(p.adminKey).send("writer", "admin")) as A2ATask;
    expect(all.totalSize).toBe(mine.totalSize);
    expect((await viaIngress(p.adminKey).listTasks("writer")).totalSize).toBe(mine.totalSize + 1);
    expect((await viaIngress(tenantKey).listTasks("writer")).tasks.map((t) => t.id)).not.toContain(adminOwn.id);
    const card = await viaIngress(tenantKey).card("writer", {
      verify: { trustAnchors: p.identity.authority.x509Authorities(), expectedSpiffeId: WRITER },
    });
    expect(card["name"]).toBe("writer");
  });

  it("accepts a JWT-SVID addressed to the ingress; the agent sees the caller's SPIFFE ID", async () => {
    const jwt = (await p.identity.authority.mintJwtSvid(RESEARCHER, [INGRESS])).token;
    const r = (await createA2AClient({
      resolve: () => ({ url: ingressUrl(), headers: { authorization: `Bearer ${jwt}` } }),
    }).send("writer", "identity")) as A2ATask;
    expect(r.status.state).toBe("TASK_STATE_COMPLETED");
    expect(seen[seen.length - 1]).toEqual({ caller: RESEARCHER, spiffeId: RESEARCHER });
  });

  it("refuses bad credentials, other tenants, the wrong audience, and what policy forbids", async () => {
    const call = (token: string | null, path = "/a2a/acme/writer") =>
      fetch(`${p.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "a2a-version": "1.0",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "SendMessage",
          params: { message: { messageId: randomUUID(), role: "ROLE_USER", parts: [{ text: "x" }] } },
        }),
      });
    const before = seen.length;
    expect((await call(null)).status).toBe(401);
    expect((await call("hexr_not_a_key")).status).toBe(401);
    expect((await call(otherTenantKey)).status).toBe(403);
    const wrongAud = (await p.identity.authority.mintJwtSvid(RESEARCHER, ["spiffe://hexr.local/system/vault"])).token;
    const r = await call(wrongAud);
    expect(r.status).toBe(401);
    const otherTenantAgent = (await p.identity.authority.mintJwtSvid("spiffe://hexr.local/agent/globex/spy/main", [INGRESS]))
      .token;
    expect((await call(otherTenantAgent)).status).toBe(403);
    const intruder = (await p.identity.authority.mintJwtSvid(INTRUDER, [INGRESS])).token;
    const denied = await call(intruder);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { code: string }).code).toBe("a2a.forbidden");
    expect((await call(tenantKey, "/a2a/acme/nobody")).status).toBe(404);
    expect(seen.length).toBe(before);
  });
});
