"""Leases on running jobs (scale-out mode): a worker node renews the leases of the jobs it runs every few seconds;
one that is not renewed for `lease_s` belonged to a node that vanished (killed, cut off), and any node takes the
job back: into the queue once, then `interrupted`, as a restart does in embedded mode. The lease row also carries a
cancel request, so a node that missed the pub/sub message sees it at its next renewal.

Node clocks are compared (renewed_at is the renewing node's time), so they must agree within a few seconds, as NTP
keeps them; the default lease of 30 s against a renewal every 5 s leaves that margin.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from oldphoto.jobs.store import JobRow, JobStore, LeaseRow, WorkerNodeRow, utcnow


class Leases:
    def __init__(self, store: JobStore) -> None:
        self.engine = store.engine
        self.reader = store.reader

    def renew(self, holder: str) -> list[str]:
        """Renew every lease of this node; the ids of its jobs that someone asked to cancel."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(LeaseRow).where(LeaseRow.holder == holder).values(renewed_at=utcnow()))
            return list(session.scalars(select(LeaseRow.job_id).where(LeaseRow.holder == holder, LeaseRow.cancel_requested)))

    def request_cancel(self, job_id: str) -> bool:
        """Mark a running job's lease; False when it has none (not running on a worker node)."""
        with Session(self.engine) as session, session.begin():
            marked = session.execute(update(LeaseRow).where(LeaseRow.job_id == job_id).values(cancel_requested=True))
            return bool(cast(CursorResult[Any], marked).rowcount)

    def take_back(self, job_id: str, lease_s: float) -> bool:
        """Remove a stale lease; True for the one node that did (so only one node re-queues or fails the job)."""
        cutoff = utcnow() - timedelta(seconds=lease_s)
        with Session(self.engine) as session, session.begin():
            removed = session.execute(delete(LeaseRow).where(LeaseRow.job_id == job_id, LeaseRow.renewed_at < cutoff))
            return bool(cast(CursorResult[Any], removed).rowcount)

    def release(self, job_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(LeaseRow).where(LeaseRow.job_id == job_id))

    def stale(self, lease_s: float) -> list[tuple[str, str, int]]:
        """(job id, lane in the fair queue, attempts) of the jobs whose lease has not been renewed for `lease_s`."""
        cutoff = utcnow() - timedelta(seconds=lease_s)
        query = (
            select(JobRow.id, func.coalesce(JobRow.share, JobRow.owner), JobRow.attempts)
            .join(LeaseRow, LeaseRow.job_id == JobRow.id)
            .where(LeaseRow.renewed_at < cutoff)
        )
        with Session(self.engine) as session:
            return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]

    def node_seen(self, holder: str, slots: int, running: int, lease_s: float) -> None:
        """A worker node says it is alive, with its room and load; records of nodes gone for ten leases go."""
        with Session(self.engine) as session, session.begin():
            session.merge(WorkerNodeRow(holder=holder, seen_at=utcnow(), slots=slots, running=running))
            session.execute(delete(WorkerNodeRow).where(WorkerNodeRow.seen_at < utcnow() - timedelta(seconds=10 * lease_s)))

    def node_gone(self, holder: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WorkerNodeRow).where(WorkerNodeRow.holder == holder))

    def live_nodes(self, lease_s: float) -> tuple[int, int]:
        """(worker nodes, their job slots) seen within `lease_s`. A read only (/healthz asks it): the records of
        nodes long gone are removed by the nodes that are alive (`node_seen`)."""
        cutoff = utcnow() - timedelta(seconds=lease_s)
        counts = select(func.count(), func.coalesce(func.sum(WorkerNodeRow.slots), 0)).where(WorkerNodeRow.seen_at >= cutoff)
        with Session(self.reader) as session:
            nodes, slots = session.execute(counts).one()
            return int(nodes), int(slots)
