/**
 * Collects one output stream of an execution up to a byte cap. Past the cap the bytes are counted
 * and dropped (the process keeps running until it ends or times out), and the text ends with a
 * marker saying how much was cut.
 */
export class CappedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(
    private readonly name: string,
    private readonly cap: number,
  ) {}

  push(chunk: Buffer): void {
    const room = this.cap - this.kept;
    if (room <= 0) {
      this.dropped += chunk.length;
      return;
    }
    if (chunk.length <= room) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
      return;
    }
    this.chunks.push(chunk.subarray(0, room));
    this.kept += room;
    this.dropped += chunk.length - room;
  }

  /** Bytes dropped before they reached us (a guest that enforces the cap itself reports them). */
  addDropped(n: number): void {
    if (n > 0) this.dropped += n;
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  get droppedBytes(): number {
    return this.dropped;
  }

  text(): string {
    let buf = Buffer.concat(this.chunks, this.kept);
    if (this.dropped > 0) buf = buf.subarray(0, utf8Boundary(buf));
    const s = buf.toString("utf8");
    return this.dropped > 0 ? `${s}${markerFor(this.name, this.cap, this.dropped)}` : s;
  }
}

export function markerFor(name: string, cap: number, dropped: number): string {
  return `\n[hexr: ${name} truncated at ${cap} bytes, ${dropped} more bytes dropped]\n`;
}

/** Length of the longest prefix that does not end inside a multi-byte UTF-8 sequence. */
export function utf8Boundary(buf: Buffer): number {
  const i = buf.length;
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  let back = 0;
  while (back < 3 && i - back - 1 >= 0 && (buf[i - back - 1]! & 0xc0) === 0x80) back++;
  const leadIdx = i - back - 1;
  if (leadIdx < 0) return i;
  const lead = buf[leadIdx]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return back + 1 >= need ? i : leadIdx;
}
