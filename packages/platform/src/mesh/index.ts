export * from "./svid.js";
export * from "./authorize.js";
export * from "./headers.js";
export * from "./token.js";
export * from "./stats.js";
export * from "./inbound.js";
export * from "./outbound.js";
