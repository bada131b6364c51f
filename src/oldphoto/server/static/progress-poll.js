// One job followed by reading its status (GET /api/jobs/{id}) over and over: the page's last resort, when neither
// the WebSocket nor the event stream gets through (a proxy that blocks the one and buffers the other). Each answer
// becomes the kind of event the bar already shows (job-state.js), so the page draws it as it draws the others.

// Once a second is what a person watching a bar needs, and one small GET a second is cheap for the server.
export const POLL_EVERY_MS = 1_000;
// A failed read is tried again later and later (the server or the network may be down), up to this.
const MAX_DELAY_MS = 15_000;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const FINAL_TYPE = { succeeded: "complete", failed: "error", cancelled: "cancelled" };

/** The event a status answer stands for. `seq` is the last seq the page has: the answer is not in the job's log. */
export function eventFromStatus(job, seq) {
  const type = FINAL_TYPE[job.status] ?? (job.status === "queued" ? "queued" : "progress");
  const event = {
    type,
    job_id: job.job_id,
    seq,
    ts: Date.now() / 1000,
    polled: true,
    stage: job.stage,
    message: job.message,
    progress: job.progress ?? 0,
  };
  for (const key of ["position", "result_url", "error", "code", "metrics"]) {
    if (job[key] !== null && job[key] !== undefined) event[key] = job[key];
  }
  return event;
}

export class JobPoller {
  /**
   * getJob(jobId): a promise of the status answer (rejects with an ApiError).
   * onStatus(job): each answer; onGone(error): the job is not there (404), onOpenChange(ok): whether reads succeed.
   */
  constructor({ jobId, getJob, onStatus, onGone, onOpenChange }) {
    Object.assign(this, { jobId, getJob, onStatus, onGone, onOpenChange });
    this.timer = null;
    this.failures = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#read();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  async #read() {
    let job;
    try {
      job = await this.getJob(this.jobId);
    } catch (error) {
      if (this.stopped) return;
      if (error?.code === "not_found") {
        this.onGone(error);
        return;
      }
      this.failures += 1;
      this.onOpenChange(false);
      this.#again(Math.min(MAX_DELAY_MS, POLL_EVERY_MS * 2 ** this.failures));
      return;
    }
    if (this.stopped) return;
    this.failures = 0;
    this.onOpenChange(true);
    this.onStatus(job);
    if (!FINAL.has(job.status)) this.#again(POLL_EVERY_MS);
  }

  #again(delay) {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.#read();
    }, delay);
  }
}
