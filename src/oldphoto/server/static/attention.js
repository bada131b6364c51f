// "Colour queries": for a finished colorize job, a toggle over the result that lays the map of DDColor's colour
// queries on it (each pixel in the colour of the query that dominates it) and lists the queries that matter most,
// each with its response map (docs/protocol.md, "Colour queries"). A job without maps (not colorized, or the
// server has them off) shows no toggle.

import { currentLanguage, t } from "./i18n.js";

export class QueryLens {
  constructor(doc = document) {
    const $ = (id) => doc.getElementById(id);
    this.doc = doc;
    this.box = $("lens");
    this.button = $("lens-toggle");
    this.overlay = $("lens-overlay");
    this.panel = $("lens-panel");
    this.list = $("lens-list");
    this.jobId = null; // the job whose maps are asked for or shown
    this.index = null;
    this.lang = null; // the language the list is worded in
    this.button.addEventListener("click", () => this.#setOn(this.button.getAttribute("aria-pressed") !== "true"));
  }

  /** The finished job whose maps to offer, or null while none is (the toggle goes, the overlay with it). */
  show(jobId) {
    if (jobId === this.jobId) return;
    this.jobId = jobId;
    this.index = null;
    this.#setOn(false);
    this.box.hidden = true;
    if (jobId) this.#load(jobId);
  }

  /** Redraws the words after a language switch (and only then: the maps would load again). */
  redraw() {
    if (this.index && this.lang !== currentLanguage()) this.#renderList();
  }

  async #load(jobId) {
    let index = null;
    try {
      const response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/attention`, { credentials: "same-origin" });
      if (response.ok) index = await response.json();
    } catch {
      /* the maps are an extra: without them the result shows as ever */
    }
    if (jobId !== this.jobId || !index) return;
    this.index = index;
    this.overlay.src = index.dominance_url;
    this.#renderList();
    this.box.hidden = false;
  }

  #setOn(on) {
    this.button.setAttribute("aria-pressed", String(on));
    this.overlay.hidden = !on;
    this.panel.hidden = !on;
  }

  #renderList() {
    this.lang = currentLanguage();
    const items = this.index.queries.map((query) => {
      const item = this.doc.createElement("li");
      item.className = "lens-query";
      item.dataset.testid = "lens-query";
      const swatch = this.doc.createElement("span");
      swatch.className = "lens-swatch";
      swatch.style.background = `rgb(${query.rgb.join(",")})`;
      swatch.setAttribute("aria-hidden", "true");
      const map = this.doc.createElement("img");
      map.className = "lens-map";
      map.src = query.map_url;
      map.alt = t("lens.map", { index: query.index });
      const words = this.doc.createElement("span");
      words.className = "lens-words";
      words.textContent = t("lens.query", {
        index: query.index,
        share: Math.round(query.share * 100),
        dominates: Math.round(query.dominates * 100),
      });
      item.append(map, swatch, words);
      return item;
    });
    this.list.replaceChildren(...items);
  }
}
