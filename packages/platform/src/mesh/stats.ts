/** Counters the mesh keeps for the telemetry layer: handshake latency, connections, refusals. */
export class MeshStats {
  handshakes = 0;
  handshakeMsTotal = 0;
  /** Handshake latencies in ms, bounded ring for percentiles. */
  readonly recentHandshakes: number[] = [];
  activeConnections = 0;
  totalConnections = 0;
  readonly rejected: Record<"tls" | "policy" | "token", number> = { tls: 0, policy: 0, token: 0 };

  recordHandshake(ms: number): void {
    this.handshakes++;
    this.handshakeMsTotal += ms;
    if (this.recentHandshakes.length >= 1024) this.recentHandshakes.shift();
    this.recentHandshakes.push(ms);
  }
  connectionOpened(): void {
    this.activeConnections++;
    this.totalConnections++;
  }
  connectionClosed(): void {
    this.activeConnections--;
  }
  recordRejected(reason: "tls" | "policy" | "token"): void {
    this.rejected[reason]++;
  }
  snapshot() {
    return {
      handshakes: this.handshakes,
      handshakeMsAvg: this.handshakes ? this.handshakeMsTotal / this.handshakes : 0,
      activeConnections: this.activeConnections,
      totalConnections: this.totalConnections,
      rejected: { ...this.rejected },
    };
  }
}
