export { hexrTool, configureTools, defaultToolProvider, type HexrToolOptions } from "./hexr-tool.js";
export { ToolCredentialProvider, CACHE_LOOKUP_SPAN, type ToolCredentialProviderOptions } from "./tool-credentials.js";
export { ValkeyCache, type SharedCache, type ValkeyCacheOptions } from "./l2-cache.js";
export type { JwtSvidSource } from "./exchange-client.js";
export type { ToolCredentials } from "./types.js";
export { KNOWN_CLIENTS, type KnownTool } from "./clients.js";
