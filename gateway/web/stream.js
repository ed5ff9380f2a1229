// A job's live stream over the gateway's websocket, resumed by line number after any drop.
// The token travels as the subprotocol "token.<T>", an API key as "key.<K>" (a browser cannot set
// headers). Envelopes:
// snapshot, progress, heartbeat, segments, revised (a corrected line), final, failed, cancelled,
// lagged, error and, while a live session runs, interim and lagging (see the README's stream section).

const FINAL = new Set(["final", "failed", "cancelled"]);
const REFUSED = new Set([4400, 4401, 4404, 4410]);

export class JobStream {
  /**
   * @param {string} jobId
   * @param {string[]} protocols the credentials, as subprotocols ("token.<T>", "key.<K>")
   * @param {(envelope: object) => void} onEnvelope every envelope, in order
   * @param {(state: string, detail?: string) => void} onConnection "live", "reconnecting", "closed"
   */
  constructor(jobId, protocols, onEnvelope, onConnection) {
    this.jobId = jobId;
    this.protocols = protocols;
    this.onEnvelope = onEnvelope;
    this.onConnection = onConnection;
    this.lastLine = -1;
    this.finished = false;
    this.refused = false;
    this.attempt = 0;
    this.socket = null;
    this.timer = null; // the pending reconnect
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // follow=revisions: after the job's end the stream stays open for corrections made elsewhere.
    const path = `/v1/jobs/${encodeURIComponent(this.jobId)}/stream?after=${this.lastLine}&follow=revisions`;
    const url = `${scheme}//${location.host}${path}`;
    const socket = new WebSocket(url, this.protocols);
    this.socket = socket;
    socket.onmessage = (message) => {
      const envelope = JSON.parse(message.data);
      if (envelope.type === "snapshot") {
        this.attempt = 0;
        this.onConnection("live");
      }
      for (const line of envelope.segments || []) this.lastLine = Math.max(this.lastLine, line.seq);
      if (FINAL.has(envelope.type)) this.finished = true;
      if (envelope.type === "error" && !envelope.retryable) this.refused = true;
      this.onEnvelope(envelope);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      if (this.refused || REFUSED.has(event.code)) {
        this.onConnection("closed");
        return;
      }
      if (this.finished) {
        // Only corrections can still come: follow them again, quietly, after a pause.
        this.timer = setTimeout(() => this.open(), Math.min(60000, 5000 * 2 ** this.attempt++));
        return;
      }
      // Dropped, lagged (4408) or the gateway restarted: resume after the last line we have.
      const delay = event.code === 4408 ? 0 : Math.min(10000, 500 * 2 ** this.attempt);
      this.attempt += 1;
      this.onConnection("reconnecting", delay);
      this.timer = setTimeout(() => this.open(), delay);
    };
  }

  /**
   * A finished job's stream stays open for corrections (follow=revisions); if it dropped while the
   * page was hidden or offline, coming back opens it at once rather than after the pause, and the
   * snapshot brings the corrections missed meanwhile.
   */
  resync() {
    const open = this.socket && this.socket.readyState <= WebSocket.OPEN;
    if (!this.finished || this.refused || open) return;
    clearTimeout(this.timer);
    this.open();
  }

  close() {
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
  }
}
