"""Stage durations learned from finished jobs: robust to outliers, seeded before the first run, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oldphoto.engine import RunOptions
from oldphoto.engine.eta import Expected, seed_seconds, size_bucket
from oldphoto.jobs.durations import WINDOW, Durations, Marks, robust, updated
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Cancelled, Done, Noted
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent, Note

SHARPEN = json.dumps({"steps": "sharpen"})
PIXELS = 640 * 480


def learn_one(durations: Durations, store: JobStore, inference_s: float) -> None:
    job = store.create(NewJob("u", SHARPEN, "x", pixels=PIXELS), JobEvent(job_id="-", seq=1, stage="upload", message_key="upload", progress=0))
    marks = Marks()
    marks.said("sharpen", "preprocess", 100.0)
    marks.said("sharpen", "inference", 100.0)
    marks.said("sharpen", "postprocess", 100.0 + inference_s)
    durations.learn(job, marks, 100.0 + inference_s + 0.5)


def learned_inference(durations: Durations) -> float:
    return durations.expected("ddcolor_paper_tiny").seconds[("Sharpen", "inference", size_bucket(PIXELS))]


def test_one_outlier_among_the_recent_hardly_moves_the_estimate() -> None:
    recent: list[float] = []
    for seconds in [2.0, 2.1, 1.9, 2.0, 2.2]:
        recent = updated(recent, seconds)
    before = robust(recent)
    recent = updated(recent, 30.0)  # a cold load, a busy moment
    assert abs(robust(recent) - before) <= 0.1 * before
    mean_moved = sum(recent) / len(recent) - before
    assert mean_moved > 4  # what a mean would have done


def test_a_real_change_is_followed_within_half_the_window() -> None:
    recent = [2.0] * WINDOW
    for _ in range(WINDOW // 2 + 1):
        recent = updated(recent, 6.0)
    assert robust(recent) == 6.0
    assert len(recent) == WINDOW


def test_a_stage_lasts_until_the_next_begins_and_the_last_until_complete() -> None:
    marks = Marks()
    marks.said("a", "preprocess", 10.0)
    marks.said("a", "inference", 10.5)
    marks.said("a", "inference", 11.0)  # a step of the same stage: not a new stage
    marks.said("b", "inference", 14.0)
    assert marks.durations(15.0) == [("a", "preprocess", 0.5), ("a", "inference", 3.5), ("b", "inference+save", 1.0)]


def test_a_first_run_is_seeded_then_learned_from_and_kept_in_the_store(store: JobStore) -> None:
    durations = Durations(store, RunOptions(device="cpu"))
    assert durations.expected("ddcolor_paper_tiny") == Expected()  # nothing learned: the plan is the seed's
    learn_one(durations, store, 3.0)
    assert learned_inference(durations) == 3.0
    again = Durations(store, RunOptions(device="cpu"))  # another process (or worker node) reads the store
    assert learned_inference(again) == 3.0
    assert again.expected("ddcolor_paper_tiny").seconds[("Sharpen", "postprocess+save", size_bucket(PIXELS))] == 0.5
    assert Durations(store, RunOptions(device="cuda")).expected("ddcolor_paper_tiny") == Expected()  # per device


def test_an_outlier_job_does_not_move_the_learned_value_much(store: JobStore) -> None:
    durations = Durations(store, RunOptions(device="cpu"))
    for seconds in [3.0, 3.2, 2.9, 3.1]:
        learn_one(durations, store, seconds)
    before = learned_inference(durations)
    learn_one(durations, store, 40.0)
    assert abs(learned_inference(durations) - before) <= 0.1


def test_a_job_that_finished_teaches_and_one_cancelled_does_not(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    durations = Durations(store, RunOptions(device="cpu"))
    recorder = Recorder(store, lambda event: None, tmp_path, job_timeout_s=60, durations=durations)
    first = JobEvent(job_id="-", seq=1, stage="upload", message_key="upload", progress=0)
    ids = []
    for _ in range(2):
        job = store.create(NewJob("u", SHARPEN, "x", pixels=PIXELS), first)
        store.set_status(job.id, JobStatus.RUNNING)
        recorder.started(job.id, 0)
        for stage in ("preprocess", "inference", "postprocess"):
            note = Note(stage=stage, source="sharpen", node="sharpen", message_key=stage, progress=10)
            recorder.on_message(Noted(job.id, note))
        ids.append(job.id)
    recorder.on_message(Cancelled(ids[0]))
    assert durations.expected("ddcolor_paper_tiny") == Expected()
    recorder.on_message(Done(ids[1]))
    learned = durations.expected("ddcolor_paper_tiny").seconds
    assert {stage for _, stage, _ in learned} == {"preprocess", "inference", "postprocess+save"}
    store.close()


def test_a_job_expects_the_seed_before_anything_is_learned(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    durations = Durations(store, RunOptions(device="cpu"))
    job = store.create(NewJob("u", SHARPEN, "x", pixels=PIXELS), JobEvent(job_id="-", seq=1, stage="upload", message_key="upload", progress=0))
    seeded = sum(seed_seconds("Sharpen", s, PIXELS) for s in ("preprocess", "inference")) + seed_seconds("Sharpen", "postprocess", PIXELS, last=True)
    assert durations.job_seconds(job) == pytest.approx(seeded)
    store.close()
