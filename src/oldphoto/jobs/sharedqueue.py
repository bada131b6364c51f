"""The fair queue kept in the job store, for several processes on several machines (scale-out mode).

The same order as `scheduler.FairQueue` (tested against it): users take turns, each turn starting one job, and one
user's jobs go first come first served. Each user with waiting jobs has a lane with a `turn`; a job's place is
(its rank in its owner's lane, the lane's turn). Starting a job sends its lane to the back of the line. Turns and
tickets come from one counter, so no clock is involved and machines need not agree on the time.

Every change runs in one transaction that takes a transaction-level advisory lock on PostgreSQL, so web nodes
admitting jobs and workers taking them never interleave. (On SQLite, which has one writer at a time anyway, the
lock is not needed.) A move records nothing for the other waiting jobs: their places are live state, worked out by
each web node when it hears that the queue moved (jobs/places.py). Only a job's own place when it enters the line
(admitted, or put back) is recorded, as its `queued` event, in the transaction that puts it there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, select, text
from sqlalchemy.orm import Session

from oldphoto.jobs import announcements
from oldphoto.jobs.admission import REFUSALS, AdmissionRules, only
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.store import Job, JobRow, JobStore, LaneRow, LeaseRow, NewJob, QueueEntryRow, set_status_in, utcnow
from oldphoto.jobs.waits import WaitAt, no_wait
from oldphoto.protocol import JobEvent

Admitted = tuple[Job, list[JobEvent], int]  # the job, its `upload` and `queued` events, its place

# pg_advisory_xact_lock takes a 64-bit key: this one is "oldphoto" read as eight bytes.
LOCK_KEY = int.from_bytes(b"oldphoto", "big") & 0x7FFF_FFFF_FFFF_FFFF


class SharedQueue:
    in_database = True

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.engine = store.engine
        self.wait_at: WaitAt = no_wait  # the service's estimate of a place's wait (jobs/waits.py)

    def __len__(self) -> int:
        with Session(self.store.reader) as session:
            return session.scalar(select(func.count()).select_from(QueueEntryRow)) or 0

    def __contains__(self, job_id: str) -> bool:
        with Session(self.store.reader) as session:
            return session.get(QueueEntryRow, job_id) is not None

    def admit(self, new: NewJob, rules: AdmissionRules, blob: bytes | None) -> Admitted:
        return only(self.admit_many([(new, blob)], rules))

    def admit_many(self, items: list[tuple[NewJob, bytes | None]], rules: AdmissionRules) -> list[Admitted | BaseException]:
        """Each job with its photo, its place and its first two events, in one transaction for all, if the rules
        allow; a job they refuse gets its refusal and leaves nothing behind.

        The jobs and photos are written before the queue's lock is taken, so large ones do not hold up everyone else;
        under the lock the rules are checked in the order asked, counting the jobs admitted before in the batch.
        Each step is one statement for the whole batch (a few places excepted, below): at 10,000 waiting, a batch
        of 32 took 208 ms when each job was admitted with statements of its own."""
        news = [new for new, _ in items]
        uploads = [announcements.uploaded(new.id) for new in news]
        with Session(self.engine) as session, session.begin():
            connection = session.connection()
            jobs = self.store.create_many(list(zip(news, uploads, strict=True)), connection)
            self.store.put_blobs([(new.id, "input", blob) for new, blob in items if blob is not None], connection)
            self._lock(session)
            verdicts = self._judge(connection, news, rules)
            refused = [new.id for new, verdict in zip(news, verdicts, strict=True) if verdict is not None]
            if refused:
                self.store.delete_many(refused, connection)
            entering = [new for new, verdict in zip(news, verdicts, strict=True) if verdict is None]
            places = _enter_many(session, [(new.id, new.lane) for new in entering]) if entering else []
            waiting = max(places, default=0)
            first_places = [(new.id, announcements.queued(p, 0, self.wait_at(p, waiting))) for new, p in zip(entering, places, strict=True)]
            queued = self.store.append_second(first_places, connection)
        told = iter(zip(places, queued, strict=True))
        answers: list[Admitted | BaseException] = []
        for job, upload, verdict in zip(jobs, uploads, verdicts, strict=True):
            if verdict is not None:
                answers.append(verdict)
                continue
            place, said = next(told)
            answers.append((replace(job, last_seq=2), [upload, said], place))
        return answers

    def _judge(self, connection: Connection, news: list[NewJob], rules: AdmissionRules) -> list[BaseException | None]:
        """The rules' verdict on each job in order (None: admitted), counting those admitted before it."""
        active = _active_counts(connection, news)
        # The store counts the batch's jobs as active already, admitted or not: start from the others.
        active.subtract(Counter(key for new in news for key in _counted(new)))
        waiting = connection.scalar(select(func.count()).select_from(QueueEntryRow)) or 0
        verdicts: list[BaseException | None] = []
        for new in news:
            try:
                rules.check(active[f"owner:{new.owner}"], waiting, active[f"share:{new.share}"] if new.share else None)
            except REFUSALS as refused:
                verdicts.append(refused)
                continue
            active.update(_counted(new))
            waiting += 1
            verdicts.append(None)
        return verdicts

    def push(self, job_id: str, owner: str) -> None:
        """Into the line without a word (tests and tools; admission is `admit`)."""
        with self._locked() as session:
            if session.get(QueueEntryRow, job_id) is None:
                _enter(session, job_id, owner)

    def pop(self) -> str | None:
        """Take the next job out of the queue (its status is the caller's business: see `start_next`)."""
        with self._locked() as session:
            return _pop(session)

    def start_next(self, holder: str | None = None) -> str | None:
        """Take the next job and mark it running, in one transaction: a job is never out of the queue yet not running.

        With a `holder` (a worker node) the job is leased to it in the same transaction (see `leases.py`)."""
        with self._locked() as session:
            job_id = _pop(session)
            if job_id is not None:
                set_status_in(session, job_id, JobStatus.RUNNING)
                if holder is not None:
                    session.add(LeaseRow(job_id=job_id, holder=holder, renewed_at=utcnow(), cancel_requested=False))
            return job_id

    def requeue(self, job_id: str, lane: str, **fields: object) -> JobEvent | None:
        """A running job back in line (its node stopped or vanished), with its place recorded; None when it is not
        running any more."""
        with self._locked() as session:
            job = session.get(JobRow, job_id, with_for_update=True)
            session.execute(delete(LeaseRow).where(LeaseRow.job_id == job_id))
            if job is None or job.status != JobStatus.RUNNING:
                return None
            set_status_in(session, job_id, JobStatus.QUEUED)
            for name, value in fields.items():
                setattr(job, name, value)
            _enter(session, job_id, lane)
            session.flush()
            place = _place_of(session, job_id)
            said = announcements.queued(place, job.progress, self.wait_at(place, place))
            return self.store.append_many([(job_id, said, None, {})], session.connection())[0]

    def withdraw(self, job_id: str, final: dict[str, Any]) -> JobEvent | None:
        with self._locked() as session:
            if not _leave(session, job_id):
                return None
            return self.store.append_many([(job_id, final, JobStatus.CANCELLED, {})], session.connection())[0]

    def remove(self, job_id: str) -> bool:
        with self._locked() as session:
            return _leave(session, job_id)

    def positions(self) -> dict[str, int]:
        """Each waiting job's 1-based place: the order in which `pop` would hand them out."""
        with Session(self.store.reader) as session:
            return {job_id: place for place, job_id in enumerate(_fair_order(session), 1)}

    def place_of(self, job_id: str) -> int | None:
        with Session(self.store.reader) as session:
            return _place_of(session, job_id) if session.get(QueueEntryRow, job_id) is not None else None

    @contextmanager
    def _locked(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            self._lock(session)
            yield session

    def _lock(self, session: Session) -> None:
        if self.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def _counted(new: NewJob) -> list[str]:
    return [f"owner:{new.owner}"] + ([f"share:{new.share}"] if new.share else [])


def _active_counts(connection: Connection, news: list[NewJob]) -> Counter[str]:
    """Queued and running jobs of each owner and each share of the batch, by "owner:..." and "share:..."."""
    active = JobRow.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value))
    owners = select(JobRow.owner, func.count()).where(JobRow.owner.in_({new.owner for new in news}), active).group_by(JobRow.owner)
    counts = Counter({f"owner:{owner}": int(count) for owner, count in connection.execute(owners)})
    shares = {new.share for new in news if new.share}
    if shares:
        by_share = select(JobRow.share, func.count()).where(JobRow.share.in_(shares), active).group_by(JobRow.share)
        counts.update({f"share:{share}": int(count) for share, count in connection.execute(by_share)})
    return counts


def _fair_order(session: Session) -> list[str]:
    depth = func.row_number().over(partition_by=QueueEntryRow.owner, order_by=QueueEntryRow.ticket)
    ranked = (
        select(QueueEntryRow.job_id, depth.label("depth"), LaneRow.turn)
        .join(LaneRow, LaneRow.owner == QueueEntryRow.owner)
        .subquery()
    )
    return list(session.scalars(select(ranked.c.job_id).order_by(ranked.c.depth, ranked.c.turn)))


def _pop(session: Session) -> str | None:
    """The first job of the lane whose turn it is: every lane has one, so that is the head of the fair order.
    Two index look-ups, whatever the length of the queue."""
    owner = session.scalar(select(LaneRow.owner).order_by(LaneRow.turn).limit(1))
    if owner is None:
        return None
    entry = session.scalars(select(QueueEntryRow).where(QueueEntryRow.owner == owner).order_by(QueueEntryRow.ticket).limit(1)).one()
    session.delete(entry)
    session.flush()
    if not _close_lane_if_empty(session, owner):
        lane = session.get(LaneRow, owner)
        assert lane is not None
        lane.turn = _next_number(session)  # served: to the back of the line
    return entry.job_id


def _place_of(session: Session, job_id: str) -> int:
    """One job's place: every lane's jobs shallower than it, and the lanes ahead of its own that reach as deep."""
    entry = session.get(QueueEntryRow, job_id)
    assert entry is not None
    lane = session.get(LaneRow, entry.owner)
    assert lane is not None
    depth = session.scalar(
        select(func.count()).select_from(QueueEntryRow).where(QueueEntryRow.owner == entry.owner, QueueEntryRow.ticket < entry.ticket)
    ) or 0
    lanes_ahead = select(func.count()).select_from(LaneRow).where(LaneRow.turn < lane.turn)
    if depth == 0:  # every lane holds a job at depth 0: the lanes ahead, then this one
        return (session.scalar(lanes_ahead) or 0) + 1
    sizes = select(QueueEntryRow.owner, func.count().label("size")).group_by(QueueEntryRow.owner).subquery()
    reaching = case((sizes.c.size < depth, sizes.c.size), else_=depth)  # each lane's jobs shallower than `depth`
    shallower = session.scalar(select(func.coalesce(func.sum(reaching), 0)).where(sizes.c.owner != entry.owner)) or 0
    deep_lanes = select(func.count()).select_from(sizes).join(LaneRow, LaneRow.owner == sizes.c.owner)
    deep_lanes_ahead = session.scalar(deep_lanes.where(LaneRow.turn < lane.turn, sizes.c.size > depth)) or 0
    return int(shallower) + depth + int(deep_lanes_ahead) + 1


def _enter_many(session: Session, entries: list[tuple[str, str]]) -> list[int]:
    """Jobs (id, owner) into their owners' lanes, last, in order; their places once all are in.

    A job that opens a lane (its owner had none waiting) is at depth 0 of the lane at the back of the line: its
    place is the number of lanes before it, plus one, known without a query of its own. A job behind others of
    its owner's is placed by `_place_of`."""
    connection = session.connection()
    owners = {owner for _, owner in entries}
    lanes = {owner: turn for owner, turn in connection.execute(select(LaneRow.owner, LaneRow.turn).where(LaneRow.owner.in_(owners)))}
    lanes_before = connection.scalar(select(func.count()).select_from(LaneRow)) or 0
    number = _next_number(session) - 1
    new_lanes, rows, opened = [], [], []
    for job_id, owner in entries:
        number += 1
        if owner not in lanes:
            lanes[owner] = number
            new_lanes.append({"owner": owner, "turn": number})
            opened.append(job_id)
        rows.append({"job_id": job_id, "owner": owner, "ticket": number})
    if new_lanes:
        connection.execute(insert(LaneRow), new_lanes)
    connection.execute(insert(QueueEntryRow), rows)
    first_places = {job_id: lanes_before + i for i, job_id in enumerate(opened, 1)}
    return [first_places.get(job_id) or _place_of(session, job_id) for job_id, _ in entries]


def _enter(session: Session, job_id: str, owner: str) -> None:
    """Into its owner's lane, last; a user without waiting jobs gets a lane at the back of the line."""
    ticket = _next_number(session)
    if session.get(LaneRow, owner) is None:
        session.add(LaneRow(owner=owner, turn=ticket))
    session.add(QueueEntryRow(job_id=job_id, owner=owner, ticket=ticket))


def _leave(session: Session, job_id: str) -> bool:
    entry = session.get(QueueEntryRow, job_id)
    if entry is None:
        return False
    session.delete(entry)
    session.flush()
    _close_lane_if_empty(session, entry.owner)
    return True


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

