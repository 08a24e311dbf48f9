/** Server-Sent Events: yields the `data` of each event of a response body (comments skipped). */
export async function* sseEvents(body: ReadableStream<Uint8Array>, maxEventBytes = 16 * 1024 * 1024): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      if (buf.length > maxEventBytes) throw new Error(`an SSE event exceeds ${maxEventBytes} bytes`);
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
    }
    if (data.length) yield data.join("\n");
  } finally {
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
