import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unsafeTenantScope } from "../auth/principal.js";
import { createSqliteStorage } from "../storage/sqlite.js";
import { startTestPlatform, type TestPlatform } from "../test-support/platform.js";
import { AgentService } from "./service.js";
import { AgentStore, agentMigrations } from "./store.js";

const crew = {
  description: "writes articles",
  framework: "custom",
  entryRole: "researcher",
  skills: [{ id: "write", name: "Write an article" }],
  roles: [
    { role: "researcher", endpoint: "https://127.0.0.1:4001", pid: 100, status: "running" },
    { role: "writer", endpoint: "https://127.0.0.1:4002", pid: 101, status: "running" },
  ],
};

describe("agent registry over HTTP", () => {
  let p: TestPlatform;
  let betaKey: string;
  beforeAll(async () => {
    p = await startTestPlatform();
    for (const name of ["acme-corp", "beta-inc"]) await p.api("/api/v1/tenants", { method: "POST", json: { name } });
    betaKey = (
      (await (await p.api("/api/v1/keys", { method: "POST", json: { scope: "tenant", tenant: "beta-inc" } })).json()) as {
        key: string;
      }
    ).key;
  });
  afterAll(() => p.dispose());

  it("registers an agent with per-role SPIFFE IDs and lists it", async () => {
    const res = await p.api("/api/v1/tenants/acme-corp/agents/content-crew", { method: "PUT", json: crew });
    expect(res.status).toBe(200);
    const view = (await res.json()) as { status: string; roles: Array<{ role: string; spiffeId: string }> };
    expect(view.status).toBe("running");
    expect(view.roles.map((r) => r.spiffeId)).toEqual([
      "spiffe://hexr.local/agent/acme-corp/content-crew/researcher",
      "spiffe://hexr.local/agent/acme-corp/content-crew/writer",
    ]);
    const all = (await (await p.api("/api/v1/agents")).json()) as { items: Array<{ name: string; tenant: string }> };
    expect(all.items).toEqual([expect.objectContaining({ name: "content-crew", tenant: "acme-corp" })]);
    expect(((await (await p.api("/api/v1/agents/content-crew")).json()) as { entryRole: string }).entryRole).toBe("researcher");
  });

  it("resolves an agent to its entry role, and agent/role to that role", async () => {
    const entry = await (await p.api("/api/v1/tenants/acme-corp/agents/content-crew/resolve")).json();
    expect(entry).toEqual({
      agent: "content-crew",
      role: "researcher",
      spiffeId: "spiffe://hexr.local/agent/acme-corp/content-crew/researcher",
      url: "https://127.0.0.1:4001",
    });
    const writer = (await (await p.api("/api/v1/tenants/acme-corp/agents/content-crew/resolve?role=writer")).json()) as {
      url: string;
    };
    expect(writer.url).toBe("https://127.0.0.1:4002");
    const missing = await p.api("/api/v1/tenants/acme-corp/agents/content-crew/resolve?role=editor");
    expect(missing.status).toBe(404);
  });

  it("records heartbeats and reports a crashed role as degraded", async () => {
    const hb = await p.api("/api/v1/tenants/acme-corp/agents/content-crew/heartbeat", {
      method: "POST",
      json: { role: "writer", status: "crashed", restarts: 1 },
    });
    expect(hb.status).toBe(204);
    const view = (await (await p.api("/api/v1/tenants/acme-corp/agents/content-crew")).json()) as {
      status: string;
      roles: Array<{ restarts: number }>;
    };
    expect(view.status).toBe("degraded");
    expect(view.roles[1]!.restarts).toBe(1);
    const unavailable = await p.api("/api/v1/tenants/acme-corp/agents/content-crew/resolve?role=writer");
    expect(unavailable.status).toBe(503);
    expect(await unavailable.json()).toMatchObject({ code: "agent.unavailable" });
    const unknownRole = await p.api("/api/v1/tenants/acme-corp/agents/content-crew/heartbeat", {
      method: "POST",
      json: { role: "nobody", status: "running" },
    });
    expect(unknownRole.status).toBe(404);
  });

  it("keeps tenants apart", async () => {
    expect((await p.api("/api/v1/tenants/acme-corp/agents", { auth: betaKey })).status).toBe(403);
    expect(
      (await p.api("/api/v1/tenants/acme-corp/agents/content-crew", { method: "PUT", json: crew, auth: betaKey })).status,
    ).toBe(403);
    const own = (await (await p.api("/api/v1/agents", { auth: betaKey })).json()) as { items: unknown[] };
    expect(own.items).toEqual([]);
    expect((await p.api("/api/v1/agents/content-crew", { auth: betaKey })).status).toBe(404);
    expect((await p.api("/api/v1/agents?tenant=acme-corp", { auth: betaKey })).status).toBe(403);
  });

  it("rejects bad registrations and keeps the stored agent intact", async () => {
    const cases = [
      { ...crew, entryRole: "editor" },
      { ...crew, roles: [crew.roles[0], crew.roles[0]] },
      { ...crew, roles: [] },
      { ...crew, roles: [{ role: "Bad Role" }] },
      { ...crew, framework: "cobol" },
    ];
    for (const body of cases) {
      const res = await p.api("/api/v1/tenants/acme-corp/agents/content-crew", { method: "PUT", json: body });
      expect(res.status).toBe(400);
    }
    expect((await p.api("/api/v1/tenants/acme-corp/agents/Bad_Name", { method: "PUT", json: crew })).status).toBe(400);
    const view = (await (await p.api("/api/v1/tenants/acme-corp/agents/content-crew")).json()) as {
      roles: unknown[];
      entryRole: string;
    };
    expect(view.roles).toHaveLength(2);
    expect(view.entryRole).toBe("researcher");
  });

  it("deletes an agent", async () => {
    expect((await p.api("/api/v1/tenants/acme-corp/agents/content-crew", { method: "DELETE" })).status).toBe(204);
    expect((await p.api("/api/v1/tenants/acme-corp/agents/content-crew")).status).toBe(404);
  });
});

describe("AgentService staleness", () => {
  it("shows a running role whose heartbeats stopped as stale", async () => {
    const storage = createSqliteStorage({ filename: ":memory:" });
    await storage.migrate(agentMigrations);
    let now = 1_000_000;
    const svc = new AgentService({
      store: new AgentStore(storage),
      trustDomain: "hexr.local",
      clock: () => now,
      staleAfterMs: 15_000,
    });
    const scope = unsafeTenantScope("t1", "acme-corp");
    await svc.register(scope, "solo", { roles: [{ role: "main", status: "running", endpoint: "https://127.0.0.1:1" }] });
    expect((await svc.get(scope, "solo")).status).toBe("running");
    now += 16_000;
    const view = await svc.get(scope, "solo");
    expect(view.roles[0]!.status).toBe("stale");
    expect(view.status).toBe("stopped");
    await expect(svc.resolve(scope, "solo")).rejects.toMatchObject({ code: "agent.unavailable" });
    await svc.heartbeat(scope, "solo", { role: "main", status: "running" });
    expect((await svc.get(scope, "solo")).status).toBe("running");
    await storage.close();
  });
});
