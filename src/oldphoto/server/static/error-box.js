// The one place errors are shown: the server's sentence when it gave one (SPEC errors are {"error", "code"}),
// else ours for the code, and a Retry button. After a 429 or 503 with Retry-After, Retry waits out the time.

import { has, t } from "./i18n.js";

export class ErrorBox {
  constructor(doc = document) {
    this.box = doc.getElementById("error-box");
    this.message = doc.getElementById("error-message");
    this.wait = doc.getElementById("error-wait");
    this.retry = doc.getElementById("retry");
    this.retry.addEventListener("click", () => {
      const action = this.action;
      this.hide();
      action?.();
    });
    this.shown = null;
    this.action = null;
    this.countdown = null;
  }

  /** error: an ApiError or {message, code}; retry: what the Retry button does (none: no button). */
  show(error, retry = null) {
    this.shown = error;
    this.action = retry;
    this.box.hidden = false;
    this.retry.hidden = !retry;
    clearInterval(this.countdown);
    this.#draw();
    if (error.retryAfter > 0) {
      const until = Date.now() + error.retryAfter * 1000;
      const tick = () => {
        const left = Math.ceil((until - Date.now()) / 1000);
        this.retry.disabled = left > 0;
        this.wait.hidden = left <= 0;
        this.wait.textContent = t("error.retryIn", { seconds: left });
        if (left <= 0) clearInterval(this.countdown);
      };
      tick();
      this.countdown = setInterval(tick, 1000);
    } else {
      this.retry.disabled = false;
      this.wait.hidden = true;
    }
  }

  hide() {
    clearInterval(this.countdown);
    this.box.hidden = true;
    this.shown = null;
    this.action = null;
  }

  /** Redraws in the current language (the server's own sentence stays as it was given). */
  redraw() {
    if (this.shown) this.#draw();
  }

  #draw() {
    const { message, code } = this.shown;
    const ours = has(`error.${code}`) ? t(`error.${code}`) : t("error.unknown");
    this.message.textContent = code === "network" ? t("error.network") : message || ours;
    this.box.dataset.code = code ?? "";
  }
}
