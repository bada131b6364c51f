// The photo frame: the original while the job runs, covered by the job's latest preview once there is one, then a
// before/after comparison.
// The result lies underneath; the original is laid on top and clipped at the divider (CSS variable --pos).
// A transparent <input type=range> over the whole frame does the dragging, clicking and keyboard handling, so
// the slider is accessible without any pointer code of our own.

export class Compare {
  constructor(figure) {
    this.figure = figure;
    this.before = figure.querySelector("[data-role=before]");
    this.after = figure.querySelector("[data-role=after]");
    this.preview = figure.querySelector("[data-role=preview]");
    this.slider = figure.querySelector("input[type=range]");
    this.slider.addEventListener("input", () => this.#setPosition(this.slider.value));
    // An original the browser cannot draw (TIFF, or not an image at all) is left out rather than shown broken;
    // the result then shows alone.
    this.before.addEventListener("error", () => {
      this.before.hidden = true;
    });
    // A preview that cannot be had (the job was removed meanwhile) leaves the original showing, until a newer one.
    this.brokenPreview = null;
    this.preview.addEventListener("error", () => {
      this.brokenPreview = this.preview.getAttribute("src");
      this.preview.hidden = true;
    });
  }

  /** Lays the job's latest preview over the original while it runs; null takes it away. */
  showPreview(url) {
    setSource(this.preview, url);
    this.preview.hidden = !url || url === this.brokenPreview;
  }

  /** Shows the original (or nothing, when the page has no copy of it) and forgets any result. */
  showOriginal(url) {
    setSource(this.before, url);
    this.before.hidden = !url;
    setSource(this.after, null);
    this.after.hidden = true;
    this.showPreview(null);
    this.figure.classList.remove("is-comparing");
    this.slider.hidden = true;
    this.slider.value = "50";
    this.#setPosition(50);
  }

  /** Shows the result; with an original at hand, as a comparison. */
  showResult(url) {
    setSource(this.after, url);
    this.after.hidden = false;
    const comparing = !this.before.hidden;
    this.figure.classList.toggle("is-comparing", comparing);
    this.slider.hidden = !comparing;
  }

  #setPosition(value) {
    this.figure.style.setProperty("--pos", `${value}%`);
  }
}

// Only touch src when it changes: resetting it would reload the image and make it flicker.
function setSource(img, url) {
  if (!url) img.removeAttribute("src");
  else if (img.getAttribute("src") !== url) img.setAttribute("src", url);
}
