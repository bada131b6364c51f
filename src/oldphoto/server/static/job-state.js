// What the page knows about the job it shows, as a pure fold over the job's events: replaying the events from
// seq 1 (after a reload or a language switch) rebuilds exactly the state that watching them live built.

export const STAGES = ["upload", "queued", "preprocess", "load_model", "inference", "postprocess", "complete"];
export const ACTIVE = new Set(["uploading", "queued", "running", "cancelling"]);
// About a minute of a job's memory and speed, one sample a second: what the live chart draws.
export const SAMPLES_KEPT = 60;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

/**
 * status: uploading (the page is still sending the file), queued, running, cancelling (asked, not yet
 * confirmed), succeeded, failed, cancelled.
 */
export function newJob(jobId, { status = "queued", position = null } = {}) {
  return {
    jobId,
    status,
    stage: "upload",
    source: "system",
    message: "",
    progress: 0,
    uploadPercent: 0,
    position,
    etaS: null,
    resultUrl: null,
    previewUrl: null, // the latest preview's address: each names a newer picture
    samples: [], // the `metrics` of its live events while it runs, oldest first (at most SAMPLES_KEPT)
    metrics: null, // the run summed up, from its final event
    error: null,
    code: null,
  };
}

export function isFinal(state) {
  return FINAL.has(state.status);
}

export function applyEvent(state, event) {
  if (isFinal(state)) return state; // a job ends once; anything after that is not news
  // Live metrics are never replayed: after a reload the chart starts again from the next sample.
  if (event.type === "metrics") return event.metrics ? { ...state, samples: [...state.samples.slice(1 - SAMPLES_KEPT), event.metrics] } : state;
  // A live place is news only while the job waits (it may arrive just after the job started).
  if (event.live && state.status !== "queued" && state.status !== "cancelling") return state;
  // A preview changes the picture only: the bar, the sentence and the stage stay as the other events set them.
  if (event.type === "preview") return event.preview?.url ? { ...state, previewUrl: event.preview.url } : state;
  const next = {
    ...state,
    stage: event.stage ?? state.stage,
    source: event.source ?? state.source,
    message: event.message ?? state.message,
    // SPEC: progress never decreases within a job; hold the line even if a late event says less.
    progress: Math.max(state.progress, event.progress ?? 0),
    etaS: event.eta_s ?? null,
  };
  switch (event.type) {
    case "queued":
      return { ...next, status: keepCancelling(state, "queued"), stage: "queued", position: event.position ?? state.position };
    case "progress": {
      const waiting = next.stage === "upload" || next.stage === "queued";
      return {
        ...next,
        status: keepCancelling(state, waiting ? "queued" : "running"),
        position: waiting ? state.position : null,
      };
    }
    case "complete":
      return {
        ...next, status: "succeeded", stage: "complete", progress: 100, resultUrl: event.result_url, position: null, metrics: event.metrics ?? null,
      };
    case "error":
      // SPEC: an error event carries progress 0.
      return { ...next, status: "failed", progress: 0, error: event.error ?? event.message, code: event.code ?? null, metrics: event.metrics ?? null };
    case "cancelled":
      return { ...next, status: "cancelled", position: null, etaS: null, metrics: event.metrics ?? null };
    default:
      return state;
  }
}

// A cancel the user asked for stays visible until the server confirms it or the job ends otherwise.
function keepCancelling(state, status) {
  return state.status === "cancelling" ? "cancelling" : status;
}
