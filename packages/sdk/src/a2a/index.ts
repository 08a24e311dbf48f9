export { a2a, createA2AClient, meshResolver } from "./client.js";
export type { A2AClient, A2AClientOptions, A2AResolver, A2ATarget, CardOptions, ListTasksQuery, SendOptions } from "./client.js";
export { verifyAgentCard, type VerifyAgentCardOptions } from "./verify-card.js";
export { a2aText, isA2ATask } from "./types.js";
export type {
  A2AArtifact,
  A2AListTasksResult,
  A2AMessage,
  A2AMessageInput,
  A2APart,
  A2AStreamEvent,
  A2ATask,
  A2ATaskState,
  A2ATaskStatus,
} from "./types.js";
export type { A2AVersion } from "./wire.js";
