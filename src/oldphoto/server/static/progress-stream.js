// One job's events over Server-Sent Events (GET /api/jobs/{id}/events): the page's way when WebSockets do not get
// through (a proxy that drops the Upgrade headers, a network that blocks them). The server's stream resumes by
// Last-Event-ID, which the browser's EventSource sends by itself when it reconnects.

// The stream is opened one seq before the last one delivered, so the server replays at least one recorded event at
// once (every job's log starts with its upload event); the caller drops the repeat by its seq. A stream that has
// delivered nothing this long after it was opened got through but is held: a proxy that buffers it (nginx's
// `proxy_buffering on` keeps 4-8 KB, a small job's whole log, until the stream ends). 5 s is seconds more than the
// server needs to read one event from its log, even loaded.
export const FIRST_EVENT_MS = 5_000;
// After its first event a stream may fall quiet because the job is (a model loading, a long wait in the queue).
// EventSource hides the server's heartbeats, so after this long without an event the job's status is read: a job
// ahead of what its stream told (further on, or ended) means the stream is held (a buffer that let its first bytes
// out); otherwise it is only quiet, and is checked again after as long.
const QUIET_CHECK_MS = 5_000;
const CHECK_EVERY_MS = 1_000;

export class JobStream {
  /**
   * onEvent(event): each event of the stream, parsed (the caller drops repeats by seq).
   * onHeld(): the stream got through but delivers nothing: use something else.
   * onClosed(): the browser gave up on it (an HTTP error answer, or 204: the job has ended and was all told).
   * onOpenChange(open), onExpired(): the session's token expired (a named `token_expired` event).
   * isAhead(): a promise whether the job's status is ahead of what this stream told.
   */
  constructor({ jobId, afterSeq, lang, onEvent, onHeld, onClosed, onOpenChange, onExpired, isAhead }) {
    Object.assign(this, { jobId, afterSeq, lang, onEvent, onHeld, onClosed, onOpenChange, onExpired, isAhead });
    this.source = null;
    this.timer = null;
    this.heard = false;
    this.checking = false;
  }

  start() {
    const from = Math.max(0, this.afterSeq - 1);
    const query = `after_seq=${from}&lang=${encodeURIComponent(this.lang)}&metrics=1`;
    const source = new EventSource(`/api/jobs/${encodeURIComponent(this.jobId)}/events?${query}`);
    this.source = source;
    this.opened = Date.now();
    this.lastHeard = Date.now();
    source.onopen = () => this.onOpenChange(true);
    source.onmessage = (message) => {
      this.heard = true;
      this.lastHeard = Date.now();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onEvent(event);
    };
    source.addEventListener("token_expired", () => {
      this.stop();
      this.onExpired();
    });
    source.onerror = () => {
      this.onOpenChange(false);
      // CONNECTING: the browser retries by itself (the server's `retry:` hint); CLOSED: it has given up.
      if (source.readyState === EventSource.CLOSED) {
        this.stop();
        this.onClosed();
      }
    };
    this.timer = setInterval(() => this.#check(), CHECK_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (!this.source) return;
    const source = this.source;
    this.source = null;
    source.onopen = source.onmessage = source.onerror = null;
    source.close();
  }

  #check() {
    if (!this.source) return;
    if (!this.heard) {
      if (Date.now() - this.opened > FIRST_EVENT_MS) this.#held();
      return;
    }
    if (this.checking || Date.now() - this.lastHeard < QUIET_CHECK_MS) return;
    this.checking = true;
    const heardBefore = this.lastHeard;
    this.isAhead()
      .then((ahead) => {
        // An event that came while the status was read was only on its way: the stream is not held.
        if (ahead && this.source && this.lastHeard === heardBefore) this.#held();
        else this.lastHeard = Date.now();
      })
      .catch(() => {
        this.lastHeard = Date.now();
      })
      .finally(() => {
        this.checking = false;
      });
  }

  #held() {
    this.stop();
    this.onHeld();
  }
}
