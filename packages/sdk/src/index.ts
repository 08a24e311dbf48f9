export * from "./agent/index.js";
export * from "./identity/index.js";
export * from "./credentials/index.js";
export * from "./sandbox/index.js";
export * from "./a2a/index.js";
export * from "./telemetry/index.js";
export {
  hexrLlm,
  setLlmPrices,
  llmPrices,
  priceOf,
  costOf,
  DEFAULT_PRICES,
  type HexrLlmOptions,
  type ModelPrice,
  type PriceTable,
} from "./llm/index.js";
export * from "./vault/index.js";
