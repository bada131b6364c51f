// The restoration page: choose a photo and steps, upload it, watch the job live, compare and download.
// This module wires the pieces together and holds the page's state: the chosen photo and the job shown.

import { Api } from "./api.js";
import { ErrorBox } from "./error-box.js";
import { currentLanguage, initialLanguage, setLanguage } from "./i18n.js";
import { applyEvent, isFinal, newJob } from "./job-state.js";
import { JobView } from "./job-view.js";
import { bindPicker } from "./picker.js";
import { ProgressSocket } from "./progress-socket.js";
import { RecentList } from "./recent.js";
import { forgetJob, recallJob, rememberJob } from "./resume.js";

// The order the steps run in, whatever order they are ticked in.
const PIPELINE = ["denoise", "colorize", "upscale", "sharpen"];

const $ = (id) => document.getElementById(id);
setLanguage(initialLanguage());

let chosen = null; // {file, url, sent}: the photo picked
let shown = null; // {jobId, fileName, original, state, upload}: the job in the job card
let connected = true; // whether the progress socket is up (before its first try, as good as up)
let transport = "ws"; // how the events come: "ws", or where WebSockets do not get through "sse" or "poll"
// Jobs sent from this tab: job_id -> {photo, steps}, for their original in the comparison and for Retry.
const sent = new Map();

const api = new Api(currentLanguage());
const errors = new ErrorBox();
const view = new JobView();
const recent = new RecentList($("recent-list"), $("recent-empty"), openRecentJob);
const socket = new ProgressSocket({
  lang: currentLanguage(),
  onEvent: onJobEvent,
  onConnectionChange: (open) => {
    connected = open;
    render();
  },
  ensureSession: () => api.ensureSession(),
  getJob: (jobId) => api.getJob(jobId),
  onTransportChange: (name) => {
    transport = name;
    render();
  },
});

function render() {
  if (shown) view.render(shown.state, { connected, fileName: shown.fileName, transport });
}

// Choosing -----------------------------------------------------------------------------------------------------

function choose(file) {
  // A photo that was sent stays in use: its job shows it as "before".
  if (chosen && !chosen.sent) URL.revokeObjectURL(chosen.url);
  chosen = { file, url: URL.createObjectURL(file), sent: false };
  $("picked-preview").src = chosen.url;
  $("picked-preview").hidden = false;
  $("picked-name").textContent = file.name;
  $("dropzone").classList.add("has-photo");
  errors.hide();
  updateStart();
}

function chosenSteps() {
  return PIPELINE.filter((step) => $(`step-${step}`).checked);
}

function updateStart() {
  const steps = chosenSteps();
  $("steps-note").hidden = steps.length > 0;
  $("start").disabled = !chosen || steps.length === 0;
}

// Running a job -------------------------------------------------------------------------------------------------

async function restore(photo, steps) {
  const { file, url } = photo;
  errors.hide();
  show({ jobId: null, fileName: file.name, original: url, state: newJob(null, { status: "uploading" }) });
  view.reveal();
  const upload = api.createJob(file, steps, (percent) => {
    if (shown?.upload !== upload) return;
    shown.state = { ...shown.state, uploadPercent: percent };
    render();
  });
  shown.upload = upload;
  const mine = shown;
  let accepted;
  try {
    accepted = await upload.promise;
  } catch (error) {
    if (shown !== mine) return; // the user has moved on to another job
    if (error.code === "aborted") {
      shown.state = { ...shown.state, status: "cancelled" };
      render();
    } else {
      // No job came of it: the error box beside the photo says why, and the job card has nothing to show.
      shown = null;
      view.close();
      errors.show(error, () => restore(photo, steps));
    }
    return;
  }
  photo.sent = true;
  sent.set(accepted.job_id, { photo, steps });
  if (shown !== mine) return;
  follow(accepted.job_id, { fileName: file.name, original: url, position: accepted.position });
  rememberJob(accepted.job_id, file.name, file);
  refreshRecent();
}

function show(job) {
  if (shown?.jobId && shown.jobId !== job.jobId) socket.unfollow(shown.jobId);
  shown = job;
  view.open(job.original);
  render();
}

function follow(jobId, { fileName, original, position = null }) {
  show({ jobId, fileName, original, state: newJob(jobId, { position }) });
  socket.follow(jobId, 0);
}

function onJobEvent(event) {
  if (event.job_id !== shown?.jobId) return;
  if (event.seq === undefined) {
    onRefusal(event);
    return;
  }
  const before = shown.state.status;
  shown.state = applyEvent(shown.state, event);
  render();
  const after = shown.state.status;
  // The list speaks the server's words: a cancel not yet confirmed is still "running" there.
  recent.update(shown.jobId, after === "cancelling" ? "running" : after, shown.state.progress);
  if (after === before) return;
  if (after === "failed") {
    const again = sent.get(shown.jobId);
    errors.show({ message: shown.state.error, code: shown.state.code }, again && (() => restore(again.photo, again.steps)));
  }
  if (isFinal(shown.state)) refreshRecent();
}

// An error without a seq is not part of the job's story: the server refused a request of ours about it.
function onRefusal(event) {
  if (event.code === "not_found") {
    // Gone (expired, or owned by a session that has ended): nothing to show, nothing to resume.
    socket.unfollow(shown.jobId);
    forgetJob();
    shown = null;
    view.close();
    return;
  }
  // A cancel that crossed the job's own end is no news; anything else is worth a line.
  if (!isFinal(shown.state)) errors.show({ message: event.error, code: event.code });
}

async function cancelShown() {
  const job = shown;
  if (job.state.status === "uploading") {
    job.upload.abort();
    return;
  }
  const previous = job.state.status;
  job.state = { ...job.state, status: "cancelling" };
  render();
  if (socket.cancel(job.jobId)) return;
  try {
    await api.cancelJob(job.jobId); // the "cancelled" event follows over whichever way the events come
  } catch (error) {
    if (job.state.status === "cancelling") job.state = { ...job.state, status: previous };
    render();
    errors.show(error);
  }
}

// Recent jobs ---------------------------------------------------------------------------------------------------

async function refreshRecent() {
  try {
    recent.render(await api.listJobs());
  } catch {
    /* the list is a convenience: keep showing what it showed */
  }
}

function openRecentJob(job) {
  if (job.job_id === shown?.jobId) return;
  // The page has the original only of a photo it sent itself from this tab.
  const photo = sent.get(job.job_id)?.photo;
  follow(job.job_id, { fileName: photo?.file.name ?? null, original: photo?.url ?? null });
  rememberJob(job.job_id, photo?.file.name ?? null, photo?.file);
  view.reveal();
}

// Language ------------------------------------------------------------------------------------------------------

function switchLanguage(lang) {
  setLanguage(lang);
  api.setLanguage(lang);
  // The server words the job's sentences per connection: start the job's view afresh, the replay rewords it.
  if (shown?.jobId) {
    shown.state = newJob(shown.jobId, { position: shown.state.position });
    view.open(shown.original);
  }
  socket.setLanguage(lang);
  render();
  recent.render();
  errors.redraw();
  updateStart();
}

// Start ---------------------------------------------------------------------------------------------------------

// A browser with a live session cookie keeps its user, and so its jobs, across reloads: its first call goes out
// with the cookie alone. One without (a first visit, or a session that has ended) starts a session first, so that
// no request of the page is refused (a 401 is an error in the browser's console); a session asked for while the
// cookie still lives keeps the same user.
async function boot() {
  try {
    if (!api.hasSession()) await api.startSession();
    recent.render(await api.listJobs());
  } catch (error) {
    errors.show(error, boot);
    return;
  }
  const resumed = recallJob();
  if (resumed) follow(resumed.jobId, resumed);
}

bindPicker({ input: $("file-input"), dropzone: $("dropzone"), onFile: choose });
// A file the browser cannot draw (TIFF, or not an image) gets no broken preview; the server will judge it.
$("picked-preview").addEventListener("error", (e) => {
  e.target.hidden = true;
  $("dropzone").classList.remove("has-photo");
});
for (const step of PIPELINE) $(`step-${step}`).addEventListener("change", updateStart);
$("start").addEventListener("click", () => restore(chosen, chosenSteps()));
$("cancel").addEventListener("click", cancelShown);
$("lang-switch").value = currentLanguage();
$("lang-switch").addEventListener("change", (e) => switchLanguage(e.target.value));
updateStart();
boot();
