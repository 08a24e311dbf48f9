export { hexrAgent, agent, role, isAgentDefinition, toAgentDefinition } from "./define.js";
export type { AgentMeta, AgentSkill, AgentContext, AgentHandler, AgentDefinition, Framework } from "./define.js";
export { meshInvoke } from "./call.js";
