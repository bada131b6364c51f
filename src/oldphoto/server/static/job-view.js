// Draws a job state (job-state.js) into the job card: bar, sentence, percent, queue position, timeline, cancel
// and download. Rendering is idempotent, so the page simply renders after every change.

import { QueryLens } from "./attention.js";
import { LiveChart } from "./chart.js";
import { Compare } from "./compare.js";
import { ACTIVE, STAGES, isFinal } from "./job-state.js";
import { has, t } from "./i18n.js";

// Screen readers hear the stage changes and each 10% step, not every percent; a replay of many events at once
// (reload, language switch) is settled for this long, so it is announced once, as where the job now stands.
const ANNOUNCE_SETTLE_MS = 400;

export class JobView {
  constructor(doc = document) {
    const $ = (id) => doc.getElementById(id);
    this.card = $("job");
    this.compare = new Compare($("compare"));
    this.lens = new QueryLens(doc);
    this.bar = $("progress-bar");
    this.fill = this.bar.querySelector(".bar-fill");
    this.stageText = $("stage-text");
    this.percent = $("percent");
    this.source = $("source");
    this.position = $("position");
    this.eta = $("eta");
    this.chart = new LiveChart($("live-chart"));
    this.connectionNote = $("connection-note");
    this.transportNote = $("transport-note");
    this.finalStatus = $("final-status");
    this.timeline = [...$("timeline").querySelectorAll("li[data-stage]")];
    this.cancel = $("cancel");
    this.download = $("download");
    this.announcer = $("announcer");
    this.announced = "";
    this.announceTimer = null;
  }

  /** Opens the card for a new job with its original photo (null when the page has no copy). */
  open(originalUrl) {
    this.card.hidden = false;
    this.compare.showOriginal(originalUrl);
    this.announced = "";
  }

  close() {
    this.card.hidden = true;
  }

  /** Brings the card into view when it is out of sight: on a phone it lies below the upload form. */
  reveal() {
    const top = this.card.getBoundingClientRect().top;
    if (top >= 0 && top < window.innerHeight / 2) return;
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    this.card.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
  }

  render(state, { connected, fileName, transport = "ws" }) {
    const running = ACTIVE.has(state.status);
    this.card.dataset.status = state.status;
    this.card.dataset.transport = transport;

    const sentence = this.#sentence(state);
    this.stageText.textContent = sentence;
    this.percent.textContent = `${state.progress}%`;
    this.fill.style.width = `${state.progress}%`;
    this.bar.setAttribute("aria-valuenow", String(state.progress));
    this.bar.setAttribute("aria-valuetext", `${state.progress}% ${sentence}`);

    const sourceKey = `source.${state.source}`;
    const sourceLabel = state.status === "running" && has(sourceKey) ? t(sourceKey) : "";
    showText(this.source, sourceLabel);
    showText(this.position, state.status === "queued" && state.position ? t("job.position", { position: state.position }) : "");
    // Under a second left is no news worth a line ("about 0 s left").
    showText(this.eta, state.status === "running" && state.etaS >= 1 ? t("job.eta", { seconds: Math.round(state.etaS) }) : "");
    // "Reconnecting" only matters while there is still news to wait for.
    this.connectionNote.hidden = connected || !running || state.status === "uploading";
    // Where WebSockets do not get through, say how the news comes instead (it may come in larger steps).
    showText(this.transportNote, running && state.status !== "uploading" && transport !== "ws" ? t(`job.transport.${transport}`) : "");
    // The server's own last sentence may already say it ("Cancelled"); say it once.
    const final = finalSentence(state.status);
    showText(this.finalStatus, final !== sentence ? final : "");

    this.chart.render(state.samples, state.metrics, running);
    this.#renderTimeline(state);

    this.cancel.hidden = !running;
    this.cancel.disabled = state.status === "cancelling";
    this.cancel.textContent = t(state.status === "cancelling" ? "job.cancelling" : "job.cancel");

    this.compare.showPreview(running ? state.previewUrl : null);
    const done = state.status === "succeeded" && state.resultUrl;
    this.download.hidden = !done;
    if (done) {
      this.compare.showResult(state.resultUrl);
      this.download.href = state.resultUrl;
      this.download.download = restoredName(fileName);
    }
    this.lens.show(done ? state.jobId : null);
    this.lens.redraw();
    this.#announce(state, sentence);
  }

  #sentence(state) {
    if (state.status === "uploading") return t("job.uploading", { percent: state.uploadPercent });
    if (state.status === "failed") return state.error || state.message || t("job.failed");
    return state.message || t("job.connecting");
  }

  #renderTimeline(state) {
    const current = state.status === "succeeded" ? STAGES.length : STAGES.indexOf(state.stage);
    for (const [index, item] of this.timeline.entries()) {
      let mark = "pending";
      if (index < current) mark = "done";
      else if (index === current) mark = isFinal(state) ? "stopped" : "current";
      item.dataset.state = mark;
      if (mark === "current") item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
  }

  #announce(state, sentence) {
    const step = isFinal(state) ? "end" : Math.floor(state.progress / 10);
    const key = [state.status, state.stage, state.source, step].join("|");
    if (key === this.announced) return;
    this.announced = key;
    const words = [finalSentence(state.status), sentence, `${state.progress}%`].filter(Boolean).join(". ");
    clearTimeout(this.announceTimer);
    this.announceTimer = setTimeout(() => {
      this.announcer.textContent = words;
    }, ANNOUNCE_SETTLE_MS);
  }
}

function finalSentence(status) {
  if (status === "cancelled") return t("job.cancelled");
  if (status === "failed") return t("job.failed");
  return "";
}

function showText(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

function restoredName(fileName) {
  const stem = (fileName || "photo").replace(/\.[^.]+$/, "");
  return `${stem}-restored.png`;
}
