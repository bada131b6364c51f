"""A scale-out web node's own duties, on a real PostgreSQL: retention removes a job everywhere, once, whichever
nodes run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from oldphoto.engine import RunOptions
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.service import ServiceConfig
from oldphoto.jobs.store import JobStore, NewJob
from oldphoto.protocol import JobEvent
from oldphoto.wiring import scale_out_service
from tests.helpers.server import run_async
from tests.helpers.services import postgres_database, redis_namespace

pytestmark = pytest.mark.scaleout


def test_retention_on_two_nodes_removes_a_job_its_photos_and_each_nodes_copy(tmp_path: Path) -> None:
    with postgres_database() as database, redis_namespace() as (broker, prefix):
        store = JobStore(database)
        nodes = [
            scale_out_service(ServiceConfig(data_dir=tmp_path / f"web-{i}", run_options=RunOptions(), retention_s=0), store, broker, prefix)
            for i in range(2)
        ]
        first = JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)
        job = store.create(NewJob(owner="u", workflow="{}", input_path="/elsewhere/input"), first)
        store.put_blob(job.id, "input", b"photo")
        store.put_blob(job.id, "result", b"\x89PNG result")
        store.set_status(job.id, JobStatus.RUNNING)
        store.append(job.id, {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100}, JobStatus.SUCCEEDED)
        cached = run_async(nodes[1].result_path(store.get(job.id)))  # a client fetched the result through the second node
        assert cached is not None and cached.read_bytes() == b"\x89PNG result"
        assert run_async(nodes[0].purge_expired()) == 1
        assert store.get(job.id) is None and store.get_blob(job.id, "result") is None and store.get_blob(job.id, "input") is None
        assert cached.exists()
        assert run_async(nodes[1].purge_expired()) == 0  # already gone from the store: nothing twice, no error ...
        assert not cached.exists()  # ... and the second node's copy goes too
        store.close()


def test_a_jobs_colour_query_maps_come_from_the_store_and_go_with_the_job(tmp_path: Path) -> None:
    from oldphoto.imaging.querymaps import QueryMaps
    from oldphoto.jobs import querymaps

    with postgres_database() as database, redis_namespace() as (broker, prefix):
        store = JobStore(database)
        node = scale_out_service(ServiceConfig(data_dir=tmp_path / "web", run_options=RunOptions(), retention_s=0), store, broker, prefix)
        first = JobEvent(job_id="pending", seq=1, stage="upload", message_key="upload", progress=0)
        job = store.create(NewJob(owner="u", workflow="{}", input_path="/elsewhere/input"), first)
        packed = querymaps.pack(QueryMaps({"dominance": "dominance", "queries": []}, {"dominance": b"\x89PNG map"}))
        store.put_blob(job.id, querymaps.KIND, packed)  # as the worker node leaves them, beside the result
        store.set_status(job.id, JobStatus.RUNNING)
        assert run_async(node.query_maps_path(store.get(job.id))) is None  # not finished: none
        store.append(job.id, {"type": "complete", "stage": "complete", "message_key": "complete", "progress": 100}, JobStatus.SUCCEEDED)
        cached = run_async(node.query_maps_path(store.get(job.id)))
        assert cached is not None and querymaps.read_image(cached, "dominance") == b"\x89PNG map"
        assert run_async(node.purge_expired()) == 1
        assert store.get_blob(job.id, querymaps.KIND) is None and not cached.exists()
        store.close()
