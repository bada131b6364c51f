// Every job the page follows, live: over one WebSocket to /ws/progress (SPEC "Progress protocol") where it gets
// through, else over Server-Sent Events (progress-stream.js), else by reading each job's status (progress-poll.js).
// The socket reconnects by itself, with exponential backoff and jitter so that a restarted server is not hit by
// every browser at the same instant, and resubscribes each job after the last seq it delivered: across a drop
// nothing is lost, and as seq is checked, nothing is shown twice, whichever way the events came.
// Authentication rides on the session cookie, which the browser sends with the handshake and every request.

import { FIRST_EVENT_MS, JobStream } from "./progress-stream.js";
import { JobPoller, eventFromStatus } from "./progress-poll.js";

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
// After this many failed opens in a row (the session checked), the WebSocket is taken not to get through here (a
// proxy that drops the Upgrade headers answers the handshake with an error), and the page follows its jobs over
// SSE. Two tries cost about a second of backoff; a server that is only restarting is then followed over SSE too,
// until the next try of the WebSocket.
const FAILED_OPENS_BEFORE_FALLBACK = 2;
// While a worse transport is in use, the better one is tried again after this long, then twice as long after each
// try that fails, up to the most (a network may come back; a proxy that blocks WebSockets costs one failed
// handshake per try). The worse one is left only once the better one has delivered an event, and a better one that
// fails again within STABLE_MS of being taken up does not reset the delay: no flapping between the two.
const RETRY_BETTER_MS = 30_000;
const RETRY_BETTER_MAX_MS = 300_000;
const STABLE_MS = 60_000;

export class ProgressSocket {
  /**
   * onEvent(event): each job event, once, in seq order (a status read while polling: `polled`, the last seq again).
   * onConnectionChange(open: boolean): for a "reconnecting" note.
   * ensureSession(): a promise that the session is alive (renewed if it was not).
   * getJob(jobId): a promise of GET /api/jobs/{id}, for polling (without it the page never polls).
   * onTransportChange(name): "ws", "sse" or "poll", when the way the events come changes.
   */
  constructor({ lang, onEvent, onConnectionChange, ensureSession, getJob = null, onTransportChange = () => {} }) {
    this.lang = lang;
    this.onEvent = onEvent;
    this.onConnectionChange = onConnectionChange;
    this.ensureSession = ensureSession;
    this.getJob = getJob;
    this.onTransportChange = onTransportChange;
    this.lastSeq = new Map(); // job_id -> seq of the last event delivered
    this.ended = new Set(); // jobs whose final event was delivered
    this.progress = new Map(); // job_id -> the progress last delivered: is a quiet stream held?
    this.mode = "ws"; // how the events come: "ws", "sse" or "poll"
    this.followers = new Map(); // job_id -> its JobStream or JobPoller, when the mode is not "ws"
    this.probes = new Map(); // job_id -> a JobStream on trial while polling
    this.socket = null;
    this.attempt = 0;
    this.failedOpens = 0;
    this.retryTimer = null;
    this.heartbeat = null;
    this.firstEventTimer = null;
    this.lastHeard = 0;
    this.upgradeTimer = null;
    this.upgradeDelay = RETRY_BETTER_MS;
    this.upSince = 0;
    // Back online: no point waiting out the backoff.
    window.addEventListener("online", () => {
      if (this.mode !== "ws") this.#tryBetter();
      else if (!this.#isOpen()) this.#reconnectNow();
    });
  }

  /** "ws", "sse" or "poll": how the events come now. */
  get transport() {
    return this.mode;
  }

  /** Follows a job from after `afterSeq` (0: replay everything, which rebuilds the view after a reload). */
  follow(jobId, afterSeq = 0) {
    this.lastSeq.set(jobId, afterSeq);
    this.ended.delete(jobId);
    if (this.mode !== "ws") {
      this.#startFollower(jobId);
      return;
    }
    if (this.#isOpen()) this.#send({ type: "subscribe", job_id: jobId, after_seq: probeFrom(afterSeq), metrics: true });
    else this.#connectSoon();
  }

  unfollow(jobId) {
    if (!this.lastSeq.delete(jobId)) return;
    this.ended.delete(jobId);
    this.#stopFollower(jobId);
    if (this.#isOpen()) this.#send({ type: "unsubscribe", job_id: jobId });
  }

  /** Asks the server to cancel; false when the socket is down, so the caller uses the REST call instead. */
  cancel(jobId) {
    if (this.mode !== "ws" || !this.#isOpen()) return false;
    this.#send({ type: "cancel", job_id: jobId });
    return true;
  }

  /** The server words its sentences once per connection: reconnect, and replay every job to reword it all. */
  setLanguage(lang) {
    this.lang = lang;
    for (const jobId of this.lastSeq.keys()) this.lastSeq.set(jobId, 0);
    this.ended.clear();
    if (this.mode === "ws") {
      this.#reconnectNow();
      return;
    }
    for (const jobId of this.lastSeq.keys()) this.#startFollower(jobId);
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

  // The WebSocket: the page's own way, or, while another is in use, a trial of it that takes over once it delivers.
  #connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/progress?lang=${encodeURIComponent(this.lang)}`);
    this.socket = socket;
    let heard = false;
    socket.onopen = () => {
      this.lastHeard = Date.now();
      // One seq before the last delivered: the server replays that one at once (dropped here as a repeat), so a
      // socket that opens but relays nothing (a proxy in the way) is known within FIRST_EVENT_MS.
      for (const [jobId, afterSeq] of this.lastSeq) {
        this.#send({ type: "subscribe", job_id: jobId, after_seq: probeFrom(afterSeq), metrics: true });
      }
      if (this.lastSeq.size) this.firstEventTimer = setTimeout(() => this.#silentSocket(), FIRST_EVENT_MS);
      this.heartbeat = setInterval(() => this.#checkAlive(), PING_EVERY_MS);
      if (this.mode === "ws") this.onConnectionChange(true);
    };
    socket.onmessage = (message) => {
      this.lastHeard = Date.now();
      if (!heard) {
        heard = true;
        clearTimeout(this.firstEventTimer);
        // Only a socket that delivers counts as through: one that opens and is closed at once (a proxy or a
        // network that lets the handshake pass and nothing else) counts as a failed open.
        this.attempt = 0;
        this.failedOpens = 0;
        if (this.mode !== "ws") this.#useWebSocket();
      }
      this.#receive(message.data);
    };
    socket.onclose = (close) => {
      this.#discard();
      if (this.mode !== "ws") {
        this.#betterFailed();
        return;
      }
      this.onConnectionChange(false);
      if (!heard) this.failedOpens += 1;
      if (close.code === TOKEN_EXPIRED || this.failedOpens >= FAILED_OPENS_BEFORE_CHECK) {
        this.ensureSession()
          .catch(() => {})
          .finally(() => {
            if (this.failedOpens >= FAILED_OPENS_BEFORE_FALLBACK) this.#fallBack("sse");
            else this.#scheduleRetry();
          });
      } else {
        this.#scheduleRetry();
      }
    };
  }

  /** Opened, subscribed, and not a word within FIRST_EVENT_MS: something in the way relays nothing. */
  #silentSocket() {
    this.#discard();
    if (this.mode !== "ws") this.#betterFailed();
    else this.#fallBack("sse");
  }

  #receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    this.#deliver(event);
  }

  /** Every event, whichever way it came: each recorded seq once and in order, live ones as they come. */
  #deliver(event) {
    if (event.type === "pong" || !this.lastSeq.has(event.job_id)) return;
    // A live event (a new queue place) is not in the job's log: it repeats the last seq and is never replayed.
    // A status read while polling is not in it either.
    if (event.live || event.polled) {
      this.#pass(event);
      return;
    }
    // Events without a seq (a refused subscription, say) are not part of the job's log: pass them on as they are.
    if (Number.isInteger(event.seq)) {
      if (event.seq <= this.lastSeq.get(event.job_id)) return;
      this.lastSeq.set(event.job_id, event.seq);
    }
    this.#pass(event);
  }

  #pass(event) {
    if (Number.isFinite(event.progress) && event.type !== "error") this.progress.set(event.job_id, event.progress);
    if ((event.type === "complete" || event.type === "error" || event.type === "cancelled") && !event.live && event.seq !== undefined) {
      // The job has told its end: nothing more to follow (the stream ends by itself, polling stops).
      this.ended.add(event.job_id);
      this.#stopFollower(event.job_id);
    }
    this.onEvent(event);
  }

  #checkAlive() {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.#discard();
      if (this.mode !== "ws") {
        this.#betterFailed();
        return;
      }
      this.onConnectionChange(false);
      this.#scheduleRetry();
    } else {
      this.#send({ type: "ping" });
    }
  }

  /** Forgets the current socket without letting its late close event schedule another retry. */
  #discard() {
    clearInterval(this.heartbeat);
    clearTimeout(this.firstEventTimer);
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

  // The fallbacks ---------------------------------------------------------------------------------------------------

  /** Follows every job over SSE, or by polling (only where the page can read a job's status). */
  #fallBack(mode) {
    if (mode === "poll" && !this.getJob) mode = "sse";
    if (this.mode === "ws") {
      this.#discard();
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      // A better transport that failed again soon after it was taken up waits longer before its next try.
      if (Date.now() - this.upSince > STABLE_MS) this.upgradeDelay = RETRY_BETTER_MS;
    }
    this.#setMode(mode);
    for (const jobId of this.lastSeq.keys()) this.#startFollower(jobId);
    if (!this.socket) this.#scheduleBetter(); // (else a trial of the WebSocket is under way: it reschedules)
  }

  #setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    this.onTransportChange(mode);
  }

  #startFollower(jobId) {
    this.#stopFollower(jobId);
    if (this.ended.has(jobId)) return;
    const follower = this.mode === "sse" ? this.#stream(jobId, false) : this.#poller(jobId);
    this.followers.set(jobId, follower);
    follower.start();
  }

  #stopFollower(jobId) {
    this.followers.get(jobId)?.stop();
    this.followers.delete(jobId);
    this.probes.get(jobId)?.stop();
    this.probes.delete(jobId);
  }

  #stream(jobId, onTrial) {
    const stream = new JobStream({
      jobId,
      afterSeq: this.lastSeq.get(jobId) ?? 0,
      lang: this.lang,
      onEvent: (event) => {
        if (onTrial && this.probes.get(jobId) === stream) this.#useStreams();
        this.#deliver(event);
      },
      // Held or refused: polling gets through wherever the page's own requests do.
      onHeld: () => this.#streamFailed(jobId, stream),
      onClosed: () => this.#streamFailed(jobId, stream),
      onOpenChange: (open) => {
        if (!onTrial) this.onConnectionChange(open);
      },
      onExpired: () => {
        this.ensureSession()
          .catch(() => {})
          .finally(() => {
            if (this.followers.get(jobId) === stream) this.#startFollower(jobId);
          });
      },
      isAhead: () => this.#isAhead(jobId),
    });
    return stream;
  }

  #poller(jobId) {
    return new JobPoller({
      jobId,
      getJob: this.getJob,
      onStatus: (job) => {
        if (!this.lastSeq.has(jobId)) return;
        this.#deliver(eventFromStatus({ ...job, job_id: jobId }, this.lastSeq.get(jobId)));
      },
      // The job is not there: the page hears it as it would from the socket (app.js, onRefusal).
      onGone: (error) => this.onEvent({ type: "error", job_id: jobId, code: error.code, error: error.message, progress: 0 }),
      onOpenChange: (open) => this.onConnectionChange(open),
    });
  }

  async #isAhead(jobId) {
    const job = await this.getJob?.(jobId);
    if (!job) return false;
    return ["succeeded", "failed", "cancelled"].includes(job.status) || (job.progress ?? 0) > (this.progress.get(jobId) ?? 0);
  }

  #streamFailed(jobId, stream) {
    if (this.probes.get(jobId) === stream) {
      // A trial from polling that did not deliver: stay with polling, try again later.
      for (const probe of this.probes.values()) probe.stop();
      this.probes.clear();
      this.#betterFailed(true);
      return;
    }
    if (this.followers.get(jobId) !== stream || this.ended.has(jobId)) return;
    this.#fallBack("poll");
  }

  // Trying the better transports again ---------------------------------------------------------------------------

  #scheduleBetter() {
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = setTimeout(() => {
      this.upgradeTimer = null;
      this.#tryBetter();
    }, this.upgradeDelay);
  }

  /** A trial of the WebSocket (and from polling, of SSE after it), while the current way goes on. */
  #tryBetter() {
    if (this.mode === "ws") return;
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = null;
    const active = [...this.lastSeq.keys()].some((jobId) => !this.ended.has(jobId));
    if (!active || this.socket) {
      this.#scheduleBetter(); // nothing to follow now (or a trial under way): try when it matters
      return;
    }
    this.#connect();
  }

  /** The WebSocket did not get through again; from polling, SSE gets its trial now. */
  #betterFailed(streamsTried = false) {
    if (this.mode === "poll" && !streamsTried && this.probes.size === 0) {
      for (const jobId of this.lastSeq.keys()) {
        if (this.ended.has(jobId)) continue;
        const probe = this.#stream(jobId, true);
        this.probes.set(jobId, probe);
        probe.start();
      }
      if (this.probes.size) return;
    }
    this.upgradeDelay = Math.min(RETRY_BETTER_MAX_MS, this.upgradeDelay * 2);
    this.#scheduleBetter();
  }

  #useWebSocket() {
    for (const jobId of [...this.followers.keys()]) this.#stopFollower(jobId);
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = null;
    this.upSince = Date.now();
    this.attempt = 0;
    this.failedOpens = 0;
    this.#setMode("ws");
    this.onConnectionChange(true);
  }

  #useStreams() {
    for (const [jobId, poller] of this.followers) {
      poller.stop();
      const probe = this.probes.get(jobId);
      if (probe) this.followers.set(jobId, probe);
      else this.followers.delete(jobId);
    }
    this.probes.clear();
    this.upSince = Date.now();
    this.#setMode("sse");
    this.#scheduleBetter();
  }
}

/** One before the last seq delivered (the server replays it at once: a sign of life); 0 from the start. */
function probeFrom(afterSeq) {
  return Math.max(0, afterSeq - 1);
}
