import { a2a, hexrAgent, isA2ATask } from "hexr";
import { analyze, askModel, type Analysis } from "../shared/analyze.js";

interface Notes {
  topic: string;
  analysis: Analysis;
  researchedBy: string;
}

/**
 * content-crew: two roles, two processes, two SPIFFE IDs. The researcher (entry role) studies the
 * brief and hands its notes to the writer over the mTLS mesh; the writer drafts the article.
 */
export default hexrAgent(
  {
    name: "content-crew",
    description: "Researches a brief and writes a short article about it",
    entryRole: "researcher",
    skills: [
      { id: "article", name: "Write an article", description: "Research a brief, then write about it", tags: ["writing"] },
    ],
  },
  {
    researcher: async (input: unknown, ctx) => {
      const brief = typeof input === "string" ? input : String((input as { brief?: unknown }).brief ?? "");
      if (brief.trim() === "") throw Object.assign(new Error("send a brief to write about"), { expose: true });
      const notes: Notes = { topic: brief.split(/[.!?\n]/)[0]!.trim(), analysis: analyze(brief), researchedBy: ctx.spiffeId };
      // Agent to agent over A2A: by name, through this role's mesh proxy, mTLS both ways.
      const reply = await a2a.send("content-crew/writer", { parts: [{ data: notes }] }, { signal: ctx.signal });
      const part = isA2ATask(reply) ? reply.artifacts?.[0]?.parts[0] : reply.parts[0];
      if (!part || part.data === undefined) throw Object.assign(new Error("the writer sent no draft"), { expose: true });
      return { ...(part.data as { article: string; writtenBy: string }), notes };
    },
    writer: async (input: unknown, ctx) => {
      const notes = input as Notes;
      const terms = notes.analysis.keyTerms.map((t) => t.term);
      const fromModel = await askModel(
        `Write a 3-sentence article about: ${notes.topic}. Mention: ${terms.join(", ")}`,
        ctx.signal,
      );
      const article =
        fromModel ??
        [
          `# ${notes.topic}`,
          "",
          `${notes.analysis.summary}.`,
          terms.length
            ? `The brief keeps returning to ${terms.slice(0, -1).join(", ")}${terms.length > 1 ? " and " : ""}${terms.at(-1)}.`
            : "",
          `Reading time: about ${notes.analysis.readingSeconds} seconds.`,
        ]
          .filter(Boolean)
          .join("\n");
      return { article, writtenBy: ctx.spiffeId, requestedBy: ctx.caller };
    },
  },
);
