export { A2AService, type A2AServiceOptions, type CallContext, type Caller, type ProtocolVersion } from "./service.js";
export { createJsonRpcHandler, parseVersion, type JsonRpcHandler, type RpcContext, type RpcOutcome } from "./jsonrpc.js";
export { createA2AListener, CARD_PATHS, type A2AHttpOptions, type CardProvider } from "./http.js";
export { createA2AServer, startA2AServer, type A2AServer, type A2AServerOptions, type RunningA2AServer } from "./server.js";
export { startA2ASidecar, A2A_RPC_PATH, type A2ASidecarOptions } from "./sidecar.js";
export { bridgeHandler, messageToInput, type BridgeHandlerOptions } from "./bridge-handler.js";
export {
  anonymousCaller,
  firstOf,
  meshCaller,
  encodeOnBehalfOf,
  ON_BEHALF_OF_HEADER,
  ADVERTISE_URL_HEADER,
  type CallerAuthenticator,
  type Authenticated,
  type MeshCallerOptions,
} from "./caller.js";
export {
  buildCardV1,
  buildCardV03,
  signCard,
  signerFromSvid,
  verifyCardSignature,
  SPIFFE_EXTENSION_URI,
  type AgentMetadata,
  type AgentSkillInput,
  type CardSigner,
  type SvidKeyMaterial,
} from "./card.js";
export {
  reply,
  update,
  type A2AHandler,
  type A2AHandlerContext,
  type A2AResult,
  type A2AUpdate,
  type ArtifactInput,
} from "./handler.js";
export { A2AError, A2A_CODES } from "./errors.js";
export { TaskStore, a2aMigrations } from "./store.js";
export {
  createA2AIngressModule,
  registryResolver,
  type A2AIngressOptions,
  type IngressResolver,
  type IngressUpstream,
} from "./ingress.js";
export type {
  Task as A2ATask,
  Message as A2AMessage,
  Part as A2APart,
  Artifact as A2AArtifact,
  TaskState as A2ATaskState,
  StreamEvent as A2AStreamEvent,
} from "./model.js";
export { createCheckpointedSqliteStorage, type CheckpointedSqliteOptions } from "./wal-checkpointer.js";
