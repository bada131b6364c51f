// The user's recent jobs (GET /api/jobs, newest first): a thumbnail of each result and its status.
// Choosing one shows it in the job card.

import { currentLanguage, t } from "./i18n.js";

const SHOWN = 12;

export class RecentList {
  constructor(list, emptyNote, onOpen) {
    this.list = list;
    this.emptyNote = emptyNote;
    this.onOpen = onOpen;
    this.jobs = [];
  }

  /** Draws `jobs`, or redraws the last ones (after a language switch) when called without. */
  render(jobs = this.jobs) {
    this.jobs = jobs;
    this.emptyNote.hidden = jobs.length > 0;
    this.list.replaceChildren(...jobs.slice(0, SHOWN).map((job) => this.#item(job)));
  }

  /** Keeps the entry of the job on show up to date as its events come, without refetching the list. */
  update(jobId, status, progress) {
    const job = this.jobs.find((j) => j.job_id === jobId);
    if (!job || (job.status === status && job.progress === progress)) return;
    Object.assign(job, { status, progress });
    this.list.querySelector(`li[data-job-id="${CSS.escape(jobId)}"]`)?.replaceWith(this.#item(job));
  }

  #item(job) {
    const item = document.createElement("li");
    item.className = "recent-item";
    item.dataset.jobId = job.job_id;
    item.dataset.status = job.status;

    const button = document.createElement("button");
    button.type = "button";
    button.className = "recent-open";
    const status = t(`status.${job.status}`);
    const when = formatTime(job.created_at);
    button.setAttribute("aria-label", [t("recent.open"), status, when].filter(Boolean).join(", "));
    button.addEventListener("click", () => this.onOpen(job));

    const thumb = job.status === "succeeded" && job.result_url ? document.createElement("img") : document.createElement("span");
    thumb.className = "recent-thumb";
    if (thumb.tagName === "IMG") {
      thumb.src = job.result_url;
      thumb.alt = "";
      thumb.loading = "lazy";
      thumb.decoding = "async";
    }

    const badge = document.createElement("span");
    badge.className = "recent-status";
    badge.textContent = job.status === "running" && Number.isFinite(job.progress) ? `${status} ${job.progress}%` : status;

    const time = document.createElement("span");
    time.className = "recent-time";
    time.textContent = when;

    button.append(thumb, badge, time);
    item.append(button);
    return item;
  }
}

// created_at may come as ISO text or as Unix seconds; show it in the reader's language either way.
function formatTime(value) {
  if (value == null) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(currentLanguage(), { dateStyle: "medium", timeStyle: "short" }).format(date);
}
