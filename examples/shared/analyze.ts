/**
 * Deterministic text analysis used by the examples when no model provider is configured, so they
 * run (and are tested) without an LLM account.
 */
const STOP = new Set(
  "a an and are as at be by for from has have in is it its of on or that the this to was were will with not but they their can we you our how what why when which who".split(
    " ",
  ),
);

export interface Analysis {
  topic: string;
  words: number;
  keyTerms: Array<{ term: string; count: number }>;
  sentences: number;
  readingSeconds: number;
  summary: string;
}

export function analyze(text: string, topic = text.split(/[.!?\n]/)[0]!.slice(0, 80)): Analysis {
  const words = text.toLowerCase().match(/[a-z][a-z'-]*/g) ?? [];
  const counts = new Map<string, number>();
  for (const w of words) if (!STOP.has(w) && w.length > 2) counts.set(w, (counts.get(w) ?? 0) + 1);
  const keyTerms = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, 5)
    .map(([term, count]) => ({ term, count }));
  const sentences = text.split(/[.!?]+/).filter((s) => s.trim().length > 0);
  const summary = sentences.length ? sentences[0]!.trim() + (sentences.length > 1 ? ` (+${sentences.length - 1} more)` : "") : "";
  return {
    topic,
    words: words.length,
    keyTerms,
    sentences: sentences.length,
    readingSeconds: Math.ceil((words.length / 230) * 60),
    summary,
  };
}

/** Asks an OpenAI-compatible chat API when OPENAI_API_KEY is set; otherwise returns undefined. */
export async function askModel(prompt: string, signal?: AbortSignal): Promise<string | undefined> {
  const key = process.env["OPENAI_API_KEY"];
  if (!key) return undefined;
  const base = process.env["OPENAI_BASE_URL"] ?? "https://api.openai.com/v1";
  const res = await fetch(`${base}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: process.env["OPENAI_MODEL"] ?? "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
    ...(signal ? { signal } : {}),
  });
  if (!res.ok) throw new Error(`model call failed: HTTP ${res.status}`);
  const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
  return body.choices[0]?.message.content;
}
