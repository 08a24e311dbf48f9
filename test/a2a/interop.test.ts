/**
 * Interoperability with the official A2A SDK (@a2a-js/sdk 1.3.0), both ways: its client, speaking
 * v1.0 and v0.3, against the Hexr A2A server; and the Hexr SDK client against its server.
 */
import { Role, TaskState, type AgentCard, type Message, type SendMessageRequest, type Task } from "@a2a-js/sdk";
import {
  Client,
  ClientFactory,
  ClientFactoryOptions,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
} from "@a2a-js/sdk/client";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "../../packages/platform/src/a2a/handler.js";
import { asCaller, ALICE, startTestA2A, until, type TestA2A } from "../../packages/platform/src/a2a/test-support/server.js";
import { sqliteFixture } from "../../packages/platform/src/test-support/storage.js";
import type { Storage } from "../../packages/platform/src/storage/types.js";
import { a2aText, createA2AClient, isA2ATask, type A2AStreamEvent, type A2ATask } from "../../packages/sdk/src/a2a/index.js";
import { startReferenceServer, type ReferenceServer } from "./reference-server.js";

const text = (value: string, extra: Partial<Message> = {}): SendMessageRequest =>
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
      ...extra,
    },
    configuration: undefined,
    metadata: undefined,
  }) as SendMessageRequest;

const artifactText = (t: Task) =>
  t.artifacts.flatMap((a) => a.parts.map((p) => (p.content?.$case === "text" ? p.content.value : ""))).join("");

describe("the @a2a-js/sdk client against the Hexr A2A server", () => {
  const fixture = sqliteFixture();
  let storage: Storage;
  let hexr: TestA2A;
  let waiting = 0;
  // The mesh proxy in front of the server adds these; the SDK's fetch hook stands in for it.
  const meshFetch: typeof fetch = (input, init = {}) =>
    fetch(input, { ...init, headers: { ...Object.fromEntries(new Headers(init.headers).entries()), ...asCaller(ALICE) } });

  beforeAll(async () => {
    storage = await fixture.open();
    hexr = await startTestA2A({
      storage,
      metadata: {
        name: "writer",
        description: "writes",
        skills: [{ id: "write", name: "Write", description: "writes on a topic", tags: ["writing"] }],
      },
      handler: async function* (m, ctx) {
        const t = m.parts[0]?.text ?? "";
        if (t === "wait") {
          waiting++;
          await new Promise((r) => ctx.signal.addEventListener("abort", r));
          return undefined;
        }
        if (t === "ask") return reply.inputRequired("about what?");
        yield "echo: ";
        yield t;
        return undefined;
      },
    });
  });
  afterAll(async () => {
    await hexr.close();
    await storage.close();
    await fixture.cleanup();
  });

  const v1Client = async (): Promise<Client> =>
    new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        cardResolver: new DefaultAgentCardResolver({ fetchImpl: meshFetch }),
        transports: [new JsonRpcTransportFactory({ fetchImpl: meshFetch })],
      }),
    ).createFromUrl(new URL("/", hexr.url).toString());

  /** A v0.3 client: it reads the v0.3 card (no A2A-Version) as a v0.3-only agent would publish it. */
  const v03Client = async (): Promise<Client> => {
    const card = (await (await fetch(new URL("/.well-known/agent-card.json", hexr.url))).json()) as Record<string, unknown>;
    expect(card["protocolVersion"]).toBe("0.3.0");
    const { supportedInterfaces: _v1, ...v03Only } = card;
    const factory = new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        cardResolver: new DefaultAgentCardResolver({ fetchImpl: meshFetch, legacyCompat: { enabled: true } }),
        transports: [new JsonRpcTransportFactory({ fetchImpl: meshFetch, legacyCompat: { enabled: true } })],
      }),
    );
    return factory.createFromAgentCard(v03Only as unknown as AgentCard);
  };

  for (const [version, make] of [
    ["1.0", v1Client],
    ["0.3", v03Client],
  ] as const) {
    describe(`speaking A2A ${version}`, () => {
      it("reads the card and picks the protocol version", async () => {
        const client = await make();
        expect(client.protocolVersion).toBe(version);
        const card = await client.getAgentCard();
        expect(card.name).toBe("writer");
        expect(card.capabilities?.streaming).toBe(true);
        expect(card.skills.map((s) => s.id)).toContain("write");
      });

      it("sends a message and gets the completed task, then gets it again", async () => {
        const client = await make();
        const result = (await client.sendMessage(text("SPIFFE"))) as Task;
        expect(result.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
        expect(artifactText(result)).toBe("echo: SPIFFE");
        const again = await client.getTask({ tenant: "", id: result.id, historyLength: undefined });
        expect(again.id).toBe(result.id);
        expect(artifactText(again)).toBe("echo: SPIFFE");
        expect(again.history.length).toBe(1);
      });

      it("streams: the task, the artifact chunks, then completed", async () => {
        const client = await make();
        const cases: string[] = [];
        let last: TaskState | undefined;
        let chunks = "";
        for await (const ev of client.sendMessageStream(text("stream me"))) {
          const p = ev.payload!;
          cases.push(p.$case);
          if (p.$case === "artifactUpdate")
            chunks += p.value.artifact!.parts.map((x) => (x.content?.$case === "text" ? x.content.value : "")).join("");
          if (p.$case === "statusUpdate") last = p.value.status!.state;
        }
        expect(cases[0]).toBe("task");
        expect(cases.filter((c) => c === "artifactUpdate")).toHaveLength(2);
        expect(chunks).toBe("echo: stream me");
        expect(last).toBe(TaskState.TASK_STATE_COMPLETED);
      });

      it("cancels a running task; canceling a finished task is refused with TaskNotCancelable", async () => {
        const client = await make();
        const before = waiting;
        const stream = client.sendMessageStream(text("wait"));
        const first = await stream.next();
        expect(first.value?.payload?.$case).toBe("task");
        const id = (first.value!.payload!.value as Task).id;
        await until(() => waiting > before, "the handler");
        const canceled = await client.cancelTask({ tenant: "", id, metadata: undefined });
        expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
        let end: TaskState | undefined;
        for await (const ev of stream) if (ev.payload?.$case === "statusUpdate") end = ev.payload.value.status!.state;
        expect(end).toBe(TaskState.TASK_STATE_CANCELED);
        const done = (await client.sendMessage(text("quick"))) as Task;
        await expect(client.cancelTask({ tenant: "", id: done.id, metadata: undefined })).rejects.toMatchObject({
          name: "TaskNotCancelableError",
        });
      });

      it("resubscribes to a task waiting for input and follows the next turn to its end", async () => {
        const client = await make();
        const asked = (await client.sendMessage(text("ask"))) as Task;
        expect(asked.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
        const sub = client.resubscribeTask({ tenant: "", id: asked.id });
        const first = await sub.next();
        expect((first.value?.payload?.value as Task).status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
        const answered = (await client.sendMessage(text("SPIFFE", { taskId: asked.id, contextId: asked.contextId }))) as Task;
        expect(artifactText(answered)).toBe("echo: SPIFFE");
        let end: TaskState | undefined;
        for await (const ev of sub) if (ev.payload?.$case === "statusUpdate") end = ev.payload.value.status!.state;
        expect(end).toBe(TaskState.TASK_STATE_COMPLETED);
      });

      it("gets TaskNotFound for an unknown task", async () => {
        const client = await make();
        await expect(client.getTask({ tenant: "", id: randomUUID(), historyLength: undefined })).rejects.toMatchObject({
          name: "TaskNotFoundError",
        });
      });
    });
  }
});

describe("the Hexr SDK client against an @a2a-js/sdk server", () => {
  let ref: ReferenceServer;
  let legacy: ReferenceServer;
  beforeAll(async () => {
    ref = await startReferenceServer();
    legacy = await startReferenceServer({ legacy: true });
  });
  afterAll(async () => {
    await ref.close();
    await legacy.close();
  });

  const cases = [
    ["1.0", () => createA2AClient({ resolve: () => ({ url: ref.url }) })],
    ["0.3", () => createA2AClient({ resolve: () => ({ url: legacy.url }), version: "0.3" })],
    ["auto (card)", () => createA2AClient({ resolve: () => ({ url: ref.url }), version: "auto" })],
  ] as const;

  for (const [version, make] of cases) {
    describe(`speaking ${version}`, () => {
      it("reads the card", async () => {
        const card = await make().card("reference");
        expect(card["name"]).toBe("reference");
      });

      it("sends, gets and lists nothing it should not", async () => {
        const a2a = make();
        const r = await a2a.send("reference", "hello", { messageId: randomUUID() });
        expect(isA2ATask(r)).toBe(true);
        const task = r as A2ATask;
        expect(task.status.state).toBe("TASK_STATE_COMPLETED");
        expect(a2aText(task)).toBe("echo: hello");
        const again = await a2a.getTask("reference", task.id);
        expect(again.id).toBe(task.id);
        expect(again.status.state).toBe("TASK_STATE_COMPLETED");
      });

      it("streams the task and its updates until completed", async () => {
        const events: A2AStreamEvent[] = [];
        for await (const e of make().stream("reference", "streamed")) events.push(e);
        expect(events[0]!.kind).toBe("task");
        const last = events[events.length - 1]!;
        expect(last.kind === "status-update" && last.status.state).toBe("TASK_STATE_COMPLETED");
        const chunks = events.flatMap((e) => (e.kind === "artifact-update" ? e.artifact.parts.map((p) => p.text) : []));
        expect(chunks.join("")).toBe("echo: streamed");
      });

      it("cancels a running task, and a second cancel of a finished task is TaskNotCancelable", async () => {
        const a2a = make();
        const stream = a2a.stream("reference", "wait");
        const first = await stream.next();
        expect(first.value?.kind).toBe("task");
        const id = first.value!.kind === "task" ? first.value!.task.id : "";
        const canceled = await a2a.cancel("reference", id);
        expect(canceled.status.state).toBe("TASK_STATE_CANCELED");
        await stream.return(undefined);
        const done = (await a2a.send("reference", "x")) as A2ATask;
        await expect(a2a.cancel("reference", done.id)).rejects.toMatchObject({ code: "a2a.task_not_cancelable" });
        await expect(a2a.getTask("reference", randomUUID())).rejects.toMatchObject({
          code: "a2a.task_not_found",
          kind: "not_found",
        });
      });
    });
  }
});
