"""The durable job store: jobs and their event logs in one SQL database (SQLite file or PostgreSQL).

Every event gets the next `seq` of its job in the same transaction that records it, so a log has no gaps and a
reader that asks for `seq > N` gets every later event exactly once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from oldphoto.jobs.lifecycle import FINAL_STATUSES, JobStatus, check_transition
from oldphoto.jobs.migrate import upgrade
from oldphoto.protocol import JobEvent

# (job id, event, new status or None, other columns to set)
EventItem = tuple[str, "JobEvent | dict[str, Any]", "JobStatus | None", dict[str, Any]]


def stored_body(event: JobEvent) -> str:
    """An event as the log keeps it: its job and seq are the row's columns, and what a field holds by default (a
    `progress` type, no parameters) is left out; a colorize job's log is a third smaller for it."""
    return event.model_dump_json(exclude_none=True, exclude_defaults=True, exclude=IN_COLUMNS)


def restored_event(job_id: str, seq: int, body: str) -> JobEvent:
    """The event back from its row. Bodies written before the columns were left out repeat them: the same values."""
    return JobEvent.model_validate_json(f'{{"job_id":{json.dumps(job_id)},"seq":{seq:d},{body[1:]}')


IN_COLUMNS = {"job_id", "seq"}


def new_job_id() -> str:
    """128 random bits: unguessable, so a job id is no capability by itself but leaks nothing either."""
    return secrets.token_urlsafe(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message_key: Mapped[str] = mapped_column(String(64))
    message_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    workflow: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    input_path: Mapped[str] = mapped_column(Text)
    result_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Whose share of the service the job counts against when that is not its owner's alone (NewJob.share).
    share: Mapped[str | None] = mapped_column(String(160), index=True, nullable=True)
    # The photo's width x height from its header at admission (None: not known): what its stages are expected to take.
    pixels: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # An ended job's run summed up (protocol/metrics.py `JobMetrics`, as JSON): None where it never ran on a worker.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class EventRow(Base):
    __tablename__ = "events"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)


class QueueEntryRow(Base):
    """A waiting job in the shared fair queue (jobs/sharedqueue.py); `ticket` orders one user's jobs."""

    __tablename__ = "queue_entries"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    ticket: Mapped[int] = mapped_column(BigInteger, index=True)


class BlobRow(Base):
    """A job's photo kept in the database (scale-out mode: no filesystem shared between machines)."""

    __tablename__ = "blobs"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "input" or "result"
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LeaseRow(Base):
    """A running job's claim by one worker node, renewed while it runs (scale-out mode); a stale one is taken back."""

    __tablename__ = "leases"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), index=True)
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(default=False)


class WorkerNodeRow(Base):
    """A worker node of the scale-out mode, as it said at its last lease renewal (for /healthz and /metrics)."""

    __tablename__ = "worker_nodes"

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    slots: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)


class LaneRow(Base):
    """A user with waiting jobs, and their turn: users take turns in `turn` order."""

    __tablename__ = "queue_lanes"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    turn: Mapped[int] = mapped_column(BigInteger, index=True)


class StageDurationRow(Base):
    """How long one stage takes on this deployment: the last few durations seen (jobs/durations.py) and their median."""

    __tablename__ = "stage_durations"

    model: Mapped[str] = mapped_column(String(512), primary_key=True)
    device: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)  # engine/eta.py size_bucket
    step: Mapped[str] = mapped_column(String(32), primary_key=True)  # the node type
    stage: Mapped[str] = mapped_column(String(40), primary_key=True)
    recent: Mapped[str] = mapped_column(Text)  # JSON list of seconds, oldest first
    seconds: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


# Statements built once: values go in as parameters, so SQLAlchemy compiles each once, not once per event. Event
# bodies are stored without their empty fields (a third of a progress event's bytes); reading fills them back in.
INSERT_JOB = insert(JobRow)
INSERT_EVENT = insert(EventRow)
INSERT_BLOB = insert(BlobRow)
LOCK_JOB = select(JobRow.status, JobRow.last_seq).where(JobRow.id == bindparam("job")).with_for_update()
UPDATE_JOB = update(JobRow).where(JobRow.id == bindparam("job"))


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    status: JobStatus
    stage: str
    progress: int
    message_key: str
    message_params: dict[str, Any]
    workflow: str
    model: str | None
    input_path: str
    result_path: str | None
    error: str | None
    code: str | None
    attempts: int
    last_seq: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    share: str | None = None
    pixels: int | None = None
    metrics: dict[str, Any] | None = None

    @property
    def lane(self) -> str:
        """Its lane in the fair queue: its share, or its owner's own."""
        return self.share or self.owner

    @classmethod
    def of(cls, row: JobRow) -> Job:
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["status"] = JobStatus(row.status)
        for name in ("created_at", "started_at", "finished_at"):
            if values[name] is not None and values[name].tzinfo is None:
                values[name] = values[name].replace(tzinfo=UTC)  # SQLite drops the zone
        return cls(**values)


@dataclass(frozen=True)
class NewJob:
    owner: str
    workflow: str
    input_path: str
    model: str | None = None
    id: str = field(default_factory=new_job_id)
    # A share of the service counted beside the owner's: the client address of an anonymous session
    # (docs/jobs.md, "Fairness"), so that many sessions from one address take one user's turns and room.
    share: str | None = None
    pixels: int | None = None  # from the photo's header: its stages' expected seconds depend on it

    @property
    def lane(self) -> str:
        return self.share or self.owner


class JobStore:
    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        # What only reads goes through `reader`. On SQLite it is an engine of its own whose transactions do not take
        # the write lock (`engine`'s begin immediate, below): in WAL mode readers never wait for the writer, so ten
        # thousand subscriptions reading their jobs do not queue behind each other and every admission.
        self.reader: Engine = self.engine
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
            self.reader = create_engine(url, future=True)
            event.listen(self.reader, "connect", _sqlite_pragmas)
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    def create(self, new: NewJob, first: JobEvent, connection: Connection | None = None) -> Job:
        """The job and its first event, in one transaction: its own, or the caller's `connection` (admission)."""
        if connection is None:
            with self.engine.begin() as own:
                return self.create(new, first, own)
        return self.create_many([(new, first)], connection)[0]

    def create_many(self, jobs: list[tuple[NewJob, JobEvent]], connection: Connection) -> list[Job]:
        """Jobs with their first events, in the caller's transaction: one statement per table for all of them."""
        now = utcnow()
        rows = [_new_row(new, first, now) for new, first in jobs]
        connection.execute(INSERT_JOB, rows)
        firsts = [first.model_copy(update={"job_id": new.id, "seq": 1}) for new, first in jobs]
        connection.execute(INSERT_EVENT, [{"job_id": e.job_id, "seq": 1, "body": stored_body(e)} for e in firsts])
        return [Job(**{**row, "status": JobStatus.QUEUED}) for row in rows]

    def append_second(self, items: Sequence[tuple[str, JobEvent | dict[str, Any]]], connection: Connection) -> list[JobEvent]:
        """The second event of jobs created in this same transaction (their seq is 2, with nothing to read first),
        for many jobs in one statement per table: what admission records as each job's place."""
        if not items:
            return []  # an empty list of parameters would run each statement once, without any
        recorded = [JobEvent.model_validate({**_said(said), "job_id": job_id, "seq": 2}) for job_id, said in items]
        connection.execute(UPDATE_JOB, [{"job": e.job_id, "last_seq": 2, **_shown(e)} for e in recorded])
        connection.execute(INSERT_EVENT, [{"job_id": e.job_id, "seq": 2, "body": stored_body(e)} for e in recorded])
        return recorded

    def get(self, job_id: str) -> Job | None:
        with Session(self.reader) as session:
            row = session.get(JobRow, job_id)
            return Job.of(row) if row else None

    def list_for(self, owner: str, limit: int = 50) -> list[Job]:
        query = select(JobRow).where(JobRow.owner == owner).order_by(JobRow.created_at.desc()).limit(limit)
        return self._jobs(query)

    def with_status(self, *statuses: JobStatus) -> list[Job]:
        return self._jobs(select(JobRow).where(JobRow.status.in_(statuses)).order_by(JobRow.created_at))

    def count_active(self, owner: str | None = None, connection: Connection | None = None, *, share: str | None = None) -> int:
        """Queued and running jobs: of an owner, of a share, or all."""
        query = select(func.count()).select_from(JobRow).where(JobRow.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        if owner is not None:
            query = query.where(JobRow.owner == owner)
        if share is not None:
            query = query.where(JobRow.share == share)
        if connection is not None:
            return connection.scalar(query) or 0
        with self.reader.connect() as own:
            return own.scalar(query) or 0

    def append(self, job_id: str, event: JobEvent | dict[str, Any], status: JobStatus | None = None, **fields: Any) -> JobEvent:
        """Record the next event of a job (its seq is assigned here) and move the job's state along with it."""
        return self.append_many([(job_id, event, status, fields)])[0]

    def append_many(self, items: list[EventItem], connection: Connection | None = None) -> list[JobEvent]:
        """Several events in one transaction (a queue move changes many positions at once): their own, or the
        caller's `connection` (the shared queue records moves in the transaction that makes them).

        Plain SQL statements rather than the ORM: this runs for every event of every job, on the web process's loop.
        """
        if connection is None:
            with self.engine.begin() as own:
                return self.append_many(items, own)
        recorded = []
        for job_id, said, status, fields in items:
            current = connection.execute(LOCK_JOB, {"job": job_id}).first()
            if current is None:
                raise KeyError(job_id)
            recorded_event = JobEvent.model_validate({**_said(said), "job_id": job_id, "seq": current.last_seq + 1})
            changes = {
                "last_seq": recorded_event.seq,
                **_shown(recorded_event),
                **(_status_changes(JobStatus(current.status), status) if status is not None else {}),
                **fields,
            }
            connection.execute(UPDATE_JOB, {"job": job_id, **changes})
            connection.execute(INSERT_EVENT, {"job_id": job_id, "seq": recorded_event.seq, "body": stored_body(recorded_event)})
            recorded.append(recorded_event)
        return recorded

    def set_status(self, job_id: str, status: JobStatus, **fields: Any) -> None:
        """A status change that says nothing on its own (a job handed to a worker)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                raise KeyError(job_id)
            _set_status(row, status)
            for name, value in fields.items():
                setattr(row, name, value)

    def count_by_status(self) -> dict[str, int]:
        with Session(self.reader) as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return {status: count for status, count in rows}

    def events_after(self, job_id: str, seq: int = 0) -> list[JobEvent]:
        query = select(EventRow.seq, EventRow.body).where(EventRow.job_id == job_id, EventRow.seq > seq).order_by(EventRow.seq)
        with Session(self.reader) as session:
            return [restored_event(job_id, row.seq, row.body) for row in session.execute(query)]

    def finished_before(self, moment: datetime) -> list[Job]:
        finals = [s.value for s in FINAL_STATUSES]
        return self._jobs(select(JobRow).where(JobRow.status.in_(finals), JobRow.finished_at < moment))

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as connection:
            self.delete_many([job_id], connection)

    def delete_many(self, job_ids: list[str], connection: Connection) -> None:
        """Jobs and all they hold, in the caller's transaction (admissions the rules refused)."""
        for table in (QueueEntryRow, LeaseRow, BlobRow, EventRow):
            connection.execute(delete(table).where(table.job_id.in_(job_ids)))
        connection.execute(delete(JobRow).where(JobRow.id.in_(job_ids)))

    def put_blob(self, job_id: str, kind: str, data: bytes, connection: Connection | None = None) -> None:
        if connection is None:
            with Session(self.engine) as session, session.begin():
                session.merge(BlobRow(job_id=job_id, kind=kind, data=data))
            return
        self.put_blobs([(job_id, kind, data)], connection)

    def put_blobs(self, blobs: list[tuple[str, str, bytes]], connection: Connection) -> None:
        """New blobs (job id, kind, bytes), in the caller's transaction, in one statement."""
        if blobs:
            connection.execute(INSERT_BLOB, [{"job_id": job_id, "kind": kind, "data": data} for job_id, kind, data in blobs])

    def get_blob(self, job_id: str, kind: str) -> bytes | None:
        with Session(self.reader) as session:
            row = session.get(BlobRow, (job_id, kind))
            return bytes(row.data) if row is not None else None

    def _jobs(self, query: Any) -> list[Job]:
        with Session(self.reader) as session:
            return [Job.of(row) for row in session.scalars(query)]


def _new_row(new: NewJob, first: JobEvent, now: datetime) -> dict[str, Any]:
    return {
        "id": new.id,
        "owner": new.owner,
        "status": JobStatus.QUEUED.value,
        **_shown(first),
        "workflow": new.workflow,
        "model": new.model,
        "input_path": new.input_path,
        "result_path": None,
        "error": None,
        "code": None,
        "attempts": 0,
        "last_seq": 1,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "share": new.share,
        "pixels": new.pixels,
    }


def _said(said: JobEvent | dict[str, Any]) -> dict[str, Any]:
    return said.model_dump() if isinstance(said, JobEvent) else dict(said)


def _shown(event: JobEvent) -> dict[str, Any]:
    """What a job's row repeats of its latest event, for status reads without the log."""
    return {"stage": event.stage, "progress": event.progress, "message_key": event.message_key, "message_params": event.message_params}


def set_status_in(session: Session, job_id: str, status: JobStatus) -> None:
    """A status change inside a caller's transaction (the shared queue starts a job in the one that pops it)."""
    row = session.get(JobRow, job_id, with_for_update=True)
    if row is None:
        raise KeyError(job_id)
    _set_status(row, status)


def _set_status(row: JobRow, status: JobStatus) -> None:
    for name, value in _status_changes(JobStatus(row.status), status).items():
        setattr(row, name, value)


def _status_changes(old: JobStatus, new: JobStatus) -> dict[str, Any]:
    """The columns a status change sets (none when it stays the same); raises on a change the lifecycle forbids."""
    if new == old:
        return {}
    check_transition(old, new)
    changes: dict[str, Any] = {"status": new.value}
    if new == JobStatus.RUNNING:
        changes["started_at"] = utcnow()
    elif new.is_final:
        changes["finished_at"] = utcnow()
    elif new == JobStatus.QUEUED:
        changes["started_at"] = None
    return changes


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Transactions are begun by `_sqlite_begin_immediate`, not by the driver.
    connection.isolation_level = None
    # WAL lets readers (replays, status polls) go on while the writer records events.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()



def _sqlite_begin_immediate(connection: Any) -> None:
    # SQLite ignores FOR UPDATE: a deferred transaction that reads a job's last seq and then writes could give a
    # second process the same seq. IMMEDIATE takes the write lock first (others wait, up to the driver's timeout).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
