/**
 * The baseline of bench/a2a: an @a2a-js/sdk express server (DefaultRequestHandler + InMemoryTaskStore)
 * running the same echo logic as the Hexr agent: a task whose one text artifact echoes the input.
 * Prints its port on stdout.
 */
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
import type { AddressInfo } from "node:net";

const textOf = (m: Message) => m.parts.map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");

class EchoExecutor implements AgentExecutor {
  async execute(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const now = () => new Date().toISOString();
    const m = ctx.userMessage;
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
    bus.publish(
      AgentEvent.artifactUpdate({
        taskId: ctx.taskId,
        contextId: ctx.contextId,
        artifact: {
          artifactId: crypto.randomUUID(),
          name: "result",
          description: "",
          parts: [{ content: { $case: "text", value: `echo: ${textOf(m)}` }, filename: "", mediaType: "", metadata: undefined }],
          metadata: undefined,
          extensions: [],
        },
        append: false,
        lastChunk: false,
        metadata: undefined,
      }),
    );
    bus.publish(
      AgentEvent.statusUpdate({
        taskId: ctx.taskId,
        contextId: ctx.contextId,
        status: { state: TaskState.TASK_STATE_COMPLETED, timestamp: now(), message: undefined },
        metadata: undefined,
      }),
    );
  }
  async cancelTask(): Promise<void> {}
}

const app = express();
const server = app.listen(0, "127.0.0.1", () => {
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/`;
  const card = {
    name: "echo",
    description: "echoes its input",
    supportedInterfaces: [{ url, protocolBinding: "JSONRPC", protocolVersion: "1.0", tenant: "" }],
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
        description: "echo",
        tags: ["echo"],
        examples: [],
        inputModes: [],
        outputModes: [],
        securityRequirements: [],
      },
    ],
    signatures: [],
  } as unknown as AgentCard;
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new EchoExecutor());
  app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: handler }));
  app.use("/", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
  process.stdout.write(`${port}\n`);
});
server.keepAliveTimeout = 65_000;
