// A small live chart of the running job's memory and speed (its `metrics` events), drawn on a plain canvas, and the
// run summed up once it ends. No library: two lines on a few dozen points.

import { t } from "./i18n.js";

const MB = 2 ** 20;
const MEMORY_COLOUR = "#7c5cc4";
const SPEED_COLOUR = "#d9822b";

export class LiveChart {
  constructor(figure) {
    this.figure = figure;
    this.canvas = figure.querySelector("canvas");
    this.caption = figure.querySelector("figcaption");
    this.drawn = null;
  }

  /** `samples`: the `metrics` of the job's live events, oldest first; `summary`: its final event's `metrics`. */
  render(samples, summary, running) {
    if (!running && summary) {
      this.#show(summaryText(summary), []);
    } else if (running && samples.length) {
      this.#show(liveText(samples[samples.length - 1]), samples);
    } else {
      this.figure.hidden = true;
    }
  }

  #show(text, samples) {
    this.figure.hidden = false;
    this.caption.textContent = text;
    this.canvas.hidden = samples.length < 2;
    if (samples.length >= 2 && this.drawn !== samples) {
      draw(this.canvas, samples);
      this.drawn = samples;
    }
  }
}

function liveText(sample) {
  const parts = [t("metrics.memory", { mb: Math.round(sample.rss_bytes / MB), peak: Math.round(sample.peak_rss_bytes / MB) })];
  if (sample.cuda_bytes != null) parts.push(t("metrics.gpu", { mb: Math.round(sample.cuda_bytes / MB) }));
  const speed = sample.speed;
  if (speed?.per_s != null) parts.push(t("metrics.speed", { rate: rate(speed.per_s), unit: unitName(speed.unit) }));
  if (speed) parts.push(t("metrics.done", { done: speed.done, total: speed.total }));
  return parts.join(" · ");
}

function summaryText(summary) {
  const parts = [];
  if (summary.peak_rss_bytes != null) parts.push(t("metrics.peak", { mb: Math.round(summary.peak_rss_bytes / MB) }));
  if (summary.peak_cuda_bytes != null) parts.push(t("metrics.gpuPeak", { mb: Math.round(summary.peak_cuda_bytes / MB) }));
  for (const speed of summary.speeds ?? []) {
    if (speed.per_s != null) parts.push(t("metrics.speed", { rate: rate(speed.per_s), unit: unitName(speed.unit) }));
  }
  parts.push(t("metrics.took", { seconds: summary.elapsed_s.toFixed(1) }));
  return parts.join(" · ");
}

function unitName(unit) {
  const key = `metrics.unit.${unit}`;
  const name = t(key);
  return name === key ? unit : name;
}

function rate(perSecond) {
  return perSecond >= 10 ? Math.round(perSecond) : perSecond.toFixed(1);
}

/** Memory (resident MB) and speed (units per second), each scaled to its own peak, over the job's elapsed time. */
function draw(canvas, samples) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 320;
  const height = canvas.clientHeight || 64;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const first = samples[0].elapsed_s;
  const span = Math.max(samples[samples.length - 1].elapsed_s - first, 1e-6);
  const x = (sample) => 2 + ((sample.elapsed_s - first) / span) * (width - 4);
  line(ctx, samples, x, (s) => s.rss_bytes, height, MEMORY_COLOUR);
  line(ctx, samples.filter((s) => s.speed?.per_s != null), x, (s) => s.speed.per_s, height, SPEED_COLOUR);
}

function line(ctx, samples, x, value, height, colour) {
  if (samples.length < 2) return;
  const top = Math.max(...samples.map(value)) || 1;
  ctx.beginPath();
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  samples.forEach((sample, i) => {
    const y = height - 3 - (value(sample) / top) * (height - 8);
    if (i === 0) ctx.moveTo(x(sample), y);
    else ctx.lineTo(x(sample), y);
  });
  ctx.stroke();
}
