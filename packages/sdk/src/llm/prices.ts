import { HexrError } from "@hexr/core";

/** USD per million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
}
export type PriceTable = Record<string, ModelPrice>;

/**
 * List prices (USD per 1M tokens) of common models, from the providers' public price pages in
 * 2025. They change: override or extend with `setLlmPrices` or `hexrLlm(client, { prices })`.
 * Keys match a model id exactly or as a prefix (`gpt-4o` prices `gpt-4o-2024-08-06`; the longest
 * matching key wins, so `gpt-4o-mini-...` gets the mini price).
 */
export const DEFAULT_PRICES: Readonly<PriceTable> = Object.freeze({
  "gpt-5": { input: 1.25, output: 10 },
  "gpt-5-mini": { input: 0.25, output: 2 },
  "gpt-5-nano": { input: 0.05, output: 0.4 },
  "gpt-4.1": { input: 2, output: 8 },
  "gpt-4.1-mini": { input: 0.4, output: 1.6 },
  "gpt-4.1-nano": { input: 0.1, output: 0.4 },
  "gpt-4o": { input: 2.5, output: 10 },
  "gpt-4o-mini": { input: 0.15, output: 0.6 },
  "gpt-4-turbo": { input: 10, output: 30 },
  "gpt-3.5-turbo": { input: 0.5, output: 1.5 },
  o1: { input: 15, output: 60 },
  "o1-mini": { input: 1.1, output: 4.4 },
  o3: { input: 2, output: 8 },
  "o3-mini": { input: 1.1, output: 4.4 },
  "o4-mini": { input: 1.1, output: 4.4 },
  "claude-opus-4-1": { input: 15, output: 75 },
  "claude-opus-4": { input: 15, output: 75 },
  "claude-sonnet-4-5": { input: 3, output: 15 },
  "claude-sonnet-4": { input: 3, output: 15 },
  "claude-haiku-4-5": { input: 1, output: 5 },
  "claude-3-7-sonnet": { input: 3, output: 15 },
  "claude-3-5-sonnet": { input: 3, output: 15 },
  "claude-3-5-haiku": { input: 0.8, output: 4 },
  "claude-3-opus": { input: 15, output: 75 },
  "claude-3-haiku": { input: 0.25, output: 1.25 },
});

let globalPrices: PriceTable = { ...DEFAULT_PRICES };

function validate(table: PriceTable): void {
  for (const [model, p] of Object.entries(table)) {
    const ok = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v >= 0;
    if (!model || !p || !ok(p.input) || !ok(p.output)) {
      throw new HexrError(
        "llm.invalid_price",
        `price of ${JSON.stringify(model)} needs non-negative numbers input and output (USD per 1M tokens)`,
        {
          kind: "invalid_argument",
        },
      );
    }
  }
}

/** Adds or replaces entries of the process-wide price table (`replace: true` drops the defaults). */
export function setLlmPrices(table: PriceTable, opts: { replace?: boolean } = {}): void {
  validate(table);
  globalPrices = opts.replace ? { ...table } : { ...globalPrices, ...table };
}

/** The process-wide price table. */
export function llmPrices(): Readonly<PriceTable> {
  return globalPrices;
}

/** The price of `model` (exact, else the longest key it starts with); a `provider/` prefix is ignored. */
export function priceOf(model: string | undefined, table: Readonly<PriceTable> = globalPrices): ModelPrice | undefined {
  if (!model) return undefined;
  const id = model.includes("/") ? model.slice(model.lastIndexOf("/") + 1) : model;
  if (table[id]) return table[id];
  let best: string | undefined;
  for (const key of Object.keys(table)) {
    if (
      id.startsWith(key) &&
      (id.length === key.length || /[-.@:_]/.test(id[key.length]!)) &&
      (!best || key.length > best.length)
    )
      best = key;
  }
  return best ? table[best] : undefined;
}

/** Cost in USD, or undefined when the model has no price or a token count is missing. */
export function costOf(
  model: string | undefined,
  inputTokens: number | undefined,
  outputTokens: number | undefined,
  table?: Readonly<PriceTable>,
): number | undefined {
  const p = priceOf(model, table);
  if (!p || inputTokens === undefined || outputTokens === undefined) return undefined;
  return (inputTokens * p.input + outputTokens * p.output) / 1_000_000;
}
