// One WebSocket to /ws/progress for every job the page follows (SPEC "Progress protocol").
// It reconnects by itself, with exponential backoff and jitter so that a restarted server is not hit by every
// browser at the same instant, and resubscribes each job after the last seq it delivered: across a drop nothing
// is lost, and as seq is checked, nothing is shown twice.
// Authentication rides on the session cookie, which the browser sends with the handshake.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const PING_EVERY_MS = 20_000;
// Some networks drop a connection without closing it; one silent (not even a pong) for this long is dead.
const SILENCE_LIMIT_MS = 45_000;
// The server closes with this when the session's token expires (server/ws.py).
const TOKEN_EXPIRED = 4001;
// A refused handshake (no valid session) reaches the page only as a connection that never opened, like a
// network failure; after this many of those in a row, check the session before trying again.
const FAILED_OPENS_BEFORE_CHECK = 2;

export class ProgressSocket {
  /**
   * onEvent(event): each job event, once, in seq order.
   * onConnectionChange(open: boolean): for a "reconnecting" note.
   * ensureSession(): a promise that the session is alive (renewed if it was not).
   */
  constructor({ lang, onEvent, onConnectionChange, ensureSession }) {
    this.lang = lang;
    this.onEvent = onEvent;
    this.onConnectionChange = onConnectionChange;
    this.ensureSession = ensureSession;
    this.lastSeq = new Map(); // job_id -> seq of the last event delivered
    this.socket = null;
    this.attempt = 0;
    this.failedOpens = 0;
    this.retryTimer = null;
    this.heartbeat = null;
    this.lastHeard = 0;
    // Back online: no point waiting out the backoff.
    window.addEventListener("online", () => {
      if (!this.#isOpen()) this.#reconnectNow();
    });
  }

  /** Follows a job from after `afterSeq` (0: replay everything, which rebuilds the view after a reload). */
  follow(jobId, afterSeq = 0) {
    this.lastSeq.set(jobId, afterSeq);
    if (this.#isOpen()) this.#send({ type: "subscribe", job_id: jobId, after_seq: afterSeq, metrics: true });
    else this.#connectSoon();
  }

  unfollow(jobId) {
    if (!this.lastSeq.delete(jobId)) return;
    if (this.#isOpen()) this.#send({ type: "unsubscribe", job_id: jobId });
  }

  /** Asks the server to cancel; false when the socket is down, so the caller uses the REST call instead. */
  cancel(jobId) {
    if (!this.#isOpen()) return false;
    this.#send({ type: "cancel", job_id: jobId });
    return true;
  }

  /** The server words its sentences once per connection: reconnect, and replay every job to reword it all. */
  setLanguage(lang) {
    this.lang = lang;
    for (const jobId of this.lastSeq.keys()) this.lastSeq.set(jobId, 0);
    this.#reconnectNow();
  }

  #isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  #send(message) {
    this.socket.send(JSON.stringify(message));
  }

  #connectSoon() {
    if (this.socket || this.retryTimer) return; // already connecting, connected, or waiting to retry
    this.#connect();
  }

  #reconnectNow() {
    this.#discard();
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    if (this.lastSeq.size) this.#connect();
  }

  #connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/progress?lang=${encodeURIComponent(this.lang)}`);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.failedOpens = 0;
      this.lastHeard = Date.now();
      for (const [jobId, afterSeq] of this.lastSeq) {
        this.#send({ type: "subscribe", job_id: jobId, after_seq: afterSeq, metrics: true });
      }
      this.heartbeat = setInterval(() => this.#checkAlive(), PING_EVERY_MS);
      this.onConnectionChange(true);
    };
    socket.onmessage = (message) => {
      this.lastHeard = Date.now();
      this.#receive(message.data);
    };
    socket.onclose = (close) => {
      this.#discard();
      this.onConnectionChange(false);
      this.failedOpens = opened ? 0 : this.failedOpens + 1;
      if (close.code === TOKEN_EXPIRED || this.failedOpens >= FAILED_OPENS_BEFORE_CHECK) {
        this.ensureSession().catch(() => {}).finally(() => this.#scheduleRetry());
      } else {
        this.#scheduleRetry();
      }
    };
  }

  #receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.type === "pong" || !this.lastSeq.has(event.job_id)) return;
    // A live event (a new queue place) is not in the job's log: it repeats the last seq and is never replayed.
    if (event.live) {
      this.onEvent(event);
      return;
    }
    // Events without a seq (a refused subscription, say) are not part of the job's log: pass them on as they are.
    if (Number.isInteger(event.seq)) {
      if (event.seq <= this.lastSeq.get(event.job_id)) return;
      this.lastSeq.set(event.job_id, event.seq);
    }
    this.onEvent(event);
  }

  #checkAlive() {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.#discard();
      this.onConnectionChange(false);
      this.#scheduleRetry();
    } else {
      this.#send({ type: "ping" });
    }
  }

  /** Forgets the current socket without letting its late close event schedule another retry. */
  #discard() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (!this.socket) return;
    const socket = this.socket;
    this.socket = null;
    socket.onopen = socket.onmessage = socket.onclose = null;
    if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) socket.close();
  }

  #scheduleRetry() {
    if (this.retryTimer || !this.lastSeq.size) return;
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // "Equal jitter": at least half the ceiling, so retries never bunch up near zero.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.#connect();
    }, delay);
  }
}
