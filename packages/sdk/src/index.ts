export * from "./agent/index.js";
export * from "./identity/index.js";
export * from "./credentials/index.js";
export * from "./sandbox/index.js";
export * from "./a2a/index.js";
