import type { AgentCard, Message } from "@a2a-js/sdk";
import { TaskState } from "@a2a-js/sdk";
import {
  AgentEvent,
  DefaultRequestHandler,
  InMemoryTaskStore,
  type AgentExecutor,
  type ExecutionEventBus,
  type RequestContext,
} from "@a2a-js/sdk/server";
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";
import express from "express";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

const textOf = (m: Message) => m.parts.map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");
const now = () => new Date().toISOString();

/**
 * The reference peer: an @a2a-js/sdk server. Text "wait" starts a task that runs until canceled;
 * anything else is echoed as one artifact, streamed as "echo: " then the text.
 */
class ReferenceExecutor implements AgentExecutor {
  private readonly waiting = new Map<string, () => void>();

  async execute(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const m = ctx.userMessage;
    const text = textOf(m);
    bus.publish(
      AgentEvent.task({
        id: ctx.taskId,
        contextId: ctx.contextId,
        status: { state: TaskState.TASK_STATE_WORKING, timestamp: now(), message: undefined },
        artifacts: [],
        history: [m],
        metadata: undefined,
      }),
    );
    if (text === "wait") {
      await new Promise<void>((resolve) => this.waiting.set(ctx.taskId, resolve));
      bus.publish(
        AgentEvent.statusUpdate({
          taskId: ctx.taskId,
          contextId: ctx.contextId,
          status: { state: TaskState.TASK_STATE_CANCELED, timestamp: now(), message: undefined },
          metadata: undefined,
        }),
      );
      return;
    }
    const artifactId = crypto.randomUUID();
    const chunk = (value: string, append: boolean) =>
      AgentEvent.artifactUpdate({
        taskId: ctx.taskId,
        contextId: ctx.contextId,
        artifact: {
          artifactId,
          name: "result",
          description: "",
          parts: [{ content: { $case: "text", value }, filename: "", mediaType: "", metadata: undefined }],
          metadata: undefined,
          extensions: [],
        },
        append,
        lastChunk: append,
        metadata: undefined,
      });
    bus.publish(chunk("echo: ", false));
    bus.publish(chunk(text, true));
    bus.publish(
      AgentEvent.statusUpdate({
        taskId: ctx.taskId,
        contextId: ctx.contextId,
        status: { state: TaskState.TASK_STATE_COMPLETED, timestamp: now(), message: undefined },
        metadata: undefined,
      }),
    );
  }

  async cancelTask(taskId: string): Promise<void> {
    this.waiting.get(taskId)?.();
    this.waiting.delete(taskId);
  }
}

export interface ReferenceServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the reference server; `legacy` also accepts v0.3 clients (the SDK's compat layer). */
export async function startReferenceServer(opts: { legacy?: boolean } = {}): Promise<ReferenceServer> {
  const app = express();
  const server: Server = await new Promise((r) => {
    const s = app.listen(0, "127.0.0.1", () => r(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const interfaces = [{ url, protocolBinding: "JSONRPC", protocolVersion: "1.0", tenant: "" }];
  if (opts.legacy) interfaces.push({ url, protocolBinding: "JSONRPC", protocolVersion: "0.3", tenant: "" });
  const card = {
    name: "reference",
    description: "the @a2a-js/sdk reference agent",
    supportedInterfaces: interfaces,
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: false, extensions: [] },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: [
      {
        id: "echo",
        name: "echo",
        description: "echoes",
        tags: ["echo"],
        examples: [],
        inputModes: [],
        outputModes: [],
        securityRequirements: [],
      },
    ],
    signatures: [],
  } as unknown as AgentCard;
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new ReferenceExecutor());
  const compat = opts.legacy ? { legacyCompat: { enabled: true } } : {};
  app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: handler, ...compat }));
  app.use("/", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication, ...compat }));
  return {
    url,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
