"""A job as a worker process takes it: the CPU threads of its nets are the worker's to fill in where none are given."""

from __future__ import annotations

from oldphoto.engine import RunOptions
from oldphoto.jobs.work import WorkItem


def item(options: RunOptions) -> WorkItem:
    return WorkItem("job", "in.png", "out.png", '{"steps": "upscale"}', options, 1_000_000)


def test_a_worker_gives_its_share_of_the_cores_where_the_options_leave_it() -> None:
    # The web process builds the options without ncnn, so it leaves the count to each worker (jobs/workers.py).
    assert item(RunOptions()).with_threads(3).options.threads == 3


def test_threads_the_options_name_are_kept() -> None:
    assert item(RunOptions(threads=1)).with_threads(3).options.threads == 1
