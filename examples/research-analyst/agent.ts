import { hexrAgent } from "hexr";
import { analyze, askModel } from "../shared/analyze.js";

/**
 * research-analyst: give it a text (or `{ text, topic }`), get back its key terms, size and a summary.
 * Deterministic by default; with OPENAI_API_KEY set, the summary comes from the model.
 */
export default hexrAgent(
  {
    name: "research-analyst",
    description: "Analyzes a text: key terms, length, reading time and a summary",
    skills: [
      { id: "analyze", name: "Analyze a text", description: "Key terms, counts and a one-line summary", tags: ["research"] },
    ],
  },
  async (input: unknown, ctx) => {
    const { text, topic } =
      typeof input === "string" ? { text: input, topic: undefined } : (input as { text: string; topic?: string });
    if (typeof text !== "string" || text.trim() === "")
      throw Object.assign(new Error("send a text to analyze"), { expose: true });
    const result = analyze(text, topic);
    const modelSummary = await askModel(`Summarize in one sentence:\n\n${text}`, ctx.signal);
    return { ...result, ...(modelSummary ? { summary: modelSummary } : {}), analyzedBy: ctx.spiffeId };
  },
);
