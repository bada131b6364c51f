"""Worker-node records (scale-out): counted when fresh, forgotten by the living when long gone, never by a read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from oldphoto.jobs.leases import Leases
from oldphoto.jobs.store import JobStore, WorkerNodeRow, utcnow


def records(store: JobStore) -> int:
    with Session(store.engine) as session:
        return session.scalar(select(func.count()).select_from(WorkerNodeRow)) or 0


def age(store: JobStore, holder: str, seconds: float) -> None:
    with Session(store.engine) as session, session.begin():
        session.execute(update(WorkerNodeRow).where(WorkerNodeRow.holder == holder).values(seen_at=utcnow() - timedelta(seconds=seconds)))


def test_only_fresh_nodes_count_and_a_read_removes_nothing(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    leases = Leases(store)
    leases.node_seen("a", 2, 0, lease_s=30)
    leases.node_seen("b", 1, 1, lease_s=30)
    age(store, "b", 31)  # missed its lease: not counted
    assert leases.live_nodes(30) == (1, 2)
    age(store, "b", 301)  # gone for ten leases
    assert leases.live_nodes(30) == (1, 2) and records(store) == 2  # /healthz only reads
    leases.node_seen("a", 2, 0, lease_s=30)  # a living node's heartbeat tidies up
    assert records(store) == 1 and leases.live_nodes(30) == (1, 2)
    store.close()
