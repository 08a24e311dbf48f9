export { SandboxConfig, type SandboxConfigInput } from "./config.js";
export {
  createSandboxModule,
  backendsFrom,
  limitsFrom,
  microvmImageDir,
  localPackageChecks,
  packageFetcherFrom,
  SANDBOX_SERVICE,
  type SandboxModule,
  type SandboxModuleDeps,
} from "./module.js";
export {
  SandboxService,
  type ExecContext,
  type ExecOutcome,
  type SandboxServiceOptions,
  type SandboxServiceLimits,
} from "./service.js";
export { NamespaceBackend, type NamespaceBackendOptions } from "./namespace/backend.js";
export { MicrovmBackend, MICROVM_LANGUAGES, type MicrovmBackendOptions } from "./microvm/backend.js";
export {
  setupMicrovm,
  readMeta as readMicrovmImage,
  type ImageMeta as MicrovmImage,
  type SetupOptions as MicrovmSetupOptions,
} from "./microvm/setup.js";
export type {
  SandboxBackend,
  BackendHealth,
  BackendCheck,
  BackendExecRequest,
  BackendExecResult,
  SandboxLimits,
} from "./types.js";
