export * from "./errors.js";
export * from "./spiffe-id.js";
export * from "./names.js";
export * from "./sandbox.js";
export { VERSION } from "./version.js";
export * from "./grpc.js";
