// Remembers the job this tab shows, so a reload picks it up again (SPEC: subscribe with after_seq 0 replays it).
// The original's object URL dies with the page, so a downscaled copy is kept too, for the before/after view.
// sessionStorage: it belongs to this tab, and is gone when the tab is closed.

const JOB_KEY = "oldphoto.job";
const ORIGINAL_KEY = "oldphoto.original";
// sessionStorage holds about 5 MB; a 1600 px JPEG is a few hundred kB and still looks right on a large screen.
const SNAPSHOT_MAX_SIDE = 1600;

export async function rememberJob(jobId, fileName, file = null) {
  write(JOB_KEY, JSON.stringify({ jobId, fileName }));
  remove(ORIGINAL_KEY);
  if (file) write(ORIGINAL_KEY, await snapshot(file));
}

/** {jobId, fileName, original} of the remembered job, or null. */
export function recallJob() {
  try {
    const job = JSON.parse(read(JOB_KEY) ?? "null");
    return job?.jobId ? { ...job, original: read(ORIGINAL_KEY) } : null;
  } catch {
    return null;
  }
}

export function forgetJob() {
  remove(JOB_KEY);
  remove(ORIGINAL_KEY);
}

// Formats the browser cannot decode (TIFF, say) simply have no snapshot; the page then shows the result alone.
async function snapshot(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, SNAPSHOT_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return canvas.toDataURL("image/jpeg", 0.85);
  } catch {
    return null;
  }
}

// Storage may be full or disabled; resuming is a convenience, never a reason to fail.
function read(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key, value) {
  if (value == null) return;
  try {
    sessionStorage.setItem(key, value);
  } catch {
    /* not remembered */
  }
}

function remove(key) {
  try {
    sessionStorage.removeItem(key);
  } catch {
    /* nothing to forget */
  }
}
