"""Where a running job's latest preview is kept: one blob per job in the job store, replaced by each newer one and
removed with the job (`JobStore.delete`), in both wirings (a scale-out worker node and the web nodes share only the
store). The log keeps the small `preview` event that names it, never the picture (docs/protocol.md, "Previews")."""

from __future__ import annotations

from oldphoto.jobs.store import JobStore
from oldphoto.protocol import Note

KIND = "preview"


def url(job_id: str, frame: int) -> str:
    """Always the latest picture; `v` only makes each frame's address new, so a page's <img> loads it."""
    return f"/api/jobs/{job_id}/preview?v={frame:d}"


def named(job_id: str, note: Note) -> Note:
    """A worker's `preview` note with the address of its picture."""
    assert note.preview is not None, "a preview note names its picture"
    return note.model_copy(update={"preview": note.preview.model_copy(update={"url": url(job_id, note.preview.frame)})})


def keep(store: JobStore, job_id: str, image: bytes) -> None:
    store.put_blob(job_id, KIND, image)  # an upsert: a job has one latest preview


def latest(store: JobStore, job_id: str) -> bytes | None:
    return store.get_blob(job_id, KIND)
