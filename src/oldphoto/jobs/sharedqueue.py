"""The fair queue kept in the job store, for several processes on several machines (scale-out mode).

The same order as `scheduler.FairQueue` (tested against it): users take turns, each turn starting one job, and one
user's jobs go first come first served. Each user with waiting jobs has a lane with a `turn`; a job's place is
(its rank in its owner's lane, the lane's turn). Starting a job sends its lane to the back of the line. Turns and
tickets come from one counter, so no clock is involved and machines need not agree on the time.

Every change runs in one transaction that first takes a transaction-level advisory lock on PostgreSQL, so web nodes
admitting jobs and workers taking them never interleave. (On SQLite, which has one writer at a time anyway, the
lock is not needed.) In that same transaction every waiting job whose place changed gets a `queued` event with its
new place, so whichever machine moved the queue, each client hears its place, in order; the recorded events are
handed to `publish` once the transaction is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from oldphoto.jobs import announcements
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import EventItem, JobRow, JobStore, LaneRow, LeaseRow, QueueEntryRow, set_status_in, utcnow
from oldphoto.protocol import JobEvent

# pg_advisory_xact_lock takes a 64-bit key: this one is "oldphoto" read as eight bytes.
LOCK_KEY = int.from_bytes(b"oldphoto", "big") & 0x7FFF_FFFF_FFFF_FFFF


class SharedQueue:
    def __init__(self, store: JobStore, publish: Callable[[JobEvent], None] | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.publish = publish

    def __len__(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(QueueEntryRow)) or 0

    def __contains__(self, job_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(QueueEntryRow, job_id) is not None

    def push(self, job_id: str, owner: str) -> None:
        with self._locked() as session:
            if session.get(QueueEntryRow, job_id) is None:
                _enter(session, job_id, owner)

    def pop(self) -> str | None:
        """Take the next job out of the queue (its status is the caller's business: see `start_next`)."""
        with self._locked() as session:
            return self._pop(session)

    def start_next(self, holder: str | None = None) -> str | None:
        """Take the next job and mark it running, in one transaction: a job is never out of the queue yet not running.

        With a `holder` (a worker node) the job is leased to it in the same transaction (see `leases.py`)."""
        with self._locked() as session:
            job_id = self._pop(session)
            if job_id is not None:
                set_status_in(session, job_id, JobStatus.RUNNING)
                if holder is not None:
                    session.add(LeaseRow(job_id=job_id, holder=holder, renewed_at=utcnow(), cancel_requested=False))
            return job_id

    def requeue(self, job_id: str, owner: str, **fields: object) -> bool:
        """A running job back in line (its node stopped or vanished); False when it is not running any more."""
        with self._locked() as session:
            job = session.get(JobRow, job_id, with_for_update=True)
            session.execute(delete(LeaseRow).where(LeaseRow.job_id == job_id))
            if job is None or job.status != JobStatus.RUNNING:
                return False
            set_status_in(session, job_id, JobStatus.QUEUED)
            for name, value in fields.items():
                setattr(job, name, value)
            _enter(session, job_id, owner)
            return True

    def remove(self, job_id: str) -> bool:
        with self._locked() as session:
            entry = session.get(QueueEntryRow, job_id)
            if entry is None:
                return False
            session.delete(entry)
            session.flush()
            _close_lane_if_empty(session, entry.owner)
            return True

    def positions(self) -> dict[str, int]:
        """Each waiting job's 1-based place: the order in which `pop` would hand them out."""
        with Session(self.engine) as session:
            return {job_id: place for place, job_id in enumerate(_fair_order(session), 1)}

    def _pop(self, session: Session) -> str | None:
        order = _fair_order(session, limit=1)
        if not order:
            return None
        entry = session.get(QueueEntryRow, order[0])
        assert entry is not None
        session.delete(entry)
        session.flush()
        if not _close_lane_if_empty(session, entry.owner):
            lane = session.get(LaneRow, entry.owner)
            assert lane is not None
            lane.turn = _next_number(session)  # served: to the back of the line
        return entry.job_id

    @contextmanager
    def _locked(self) -> Iterator[Session]:
        """A locked transaction that announces the places it changed before it commits."""
        recorded: list[JobEvent] = []
        with Session(self.engine) as session, session.begin():
            if self.engine.dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            yield session
            session.flush()
            recorded = self._announce(session)
        if self.publish is not None:
            for event in recorded:
                self.publish(event)

    def _announce(self, session: Session) -> list[JobEvent]:
        order = _fair_order(session)
        entries = {e.job_id: e for e in session.scalars(select(QueueEntryRow).where(QueueEntryRow.job_id.in_(order)))}
        moved = []
        for place, job_id in enumerate(order, 1):
            if entries[job_id].position != place:
                entries[job_id].position = place
                moved.append((job_id, place))
        if not moved:
            return []
        session.flush()
        progress = dict(session.execute(select(JobRow.id, JobRow.progress).where(JobRow.id.in_([j for j, _ in moved]))).tuples().all())
        items: list[EventItem] = [(job_id, announcements.queued(place, progress.get(job_id, 0)), None, {}) for job_id, place in moved]
        return self.store.append_many(items, session.connection())


def _fair_order(session: Session, limit: int | None = None) -> list[str]:
    depth = func.row_number().over(partition_by=QueueEntryRow.owner, order_by=QueueEntryRow.ticket)
    ranked = (
        select(QueueEntryRow.job_id, depth.label("depth"), LaneRow.turn)
        .join(LaneRow, LaneRow.owner == QueueEntryRow.owner)
        .subquery()
    )
    query = select(ranked.c.job_id).order_by(ranked.c.depth, ranked.c.turn)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def _enter(session: Session, job_id: str, owner: str) -> None:
    """Into its owner's lane, last; a user without waiting jobs gets a lane at the back of the line."""
    ticket = _next_number(session)
    if session.get(LaneRow, owner) is None:
        session.add(LaneRow(owner=owner, turn=ticket))
    session.add(QueueEntryRow(job_id=job_id, owner=owner, ticket=ticket))


def _next_number(session: Session) -> int:
    highest = max(
        session.scalar(select(func.max(QueueEntryRow.ticket))) or 0,
        session.scalar(select(func.max(LaneRow.turn))) or 0,
    )
    return highest + 1


def _close_lane_if_empty(session: Session, owner: str) -> bool:
    remaining = session.scalar(select(func.count()).select_from(QueueEntryRow).where(QueueEntryRow.owner == owner))
    if remaining:
        return False
    session.execute(delete(LaneRow).where(LaneRow.owner == owner))
    return True
