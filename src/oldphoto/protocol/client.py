"""Client-to-server messages on `/ws/progress`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

# The largest `seq` a client may name: a signed 64-bit integer, what every store can compare against. Beyond it the
# store itself fails (SQLite: "Python int too large"), so a larger `after_seq` is refused as malformed.
MAX_SEQ = 2**63 - 1
# Job ids are `secrets.token_urlsafe(16)`; anything outside this alphabet cannot be one, and must never reach a store
# (PostgreSQL refuses a NUL in text with an error, not an empty answer).
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=JOB_ID_PATTERN)]


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    job_id: JobId
    after_seq: int = Field(0, ge=0, le=MAX_SEQ)
    # Also the job's live `metrics` events (docs/protocol.md, "Metrics"); None: as the connection's `?metrics=` says.
    metrics: bool | None = None


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    job_id: JobId


class Cancel(BaseModel):
    type: Literal["cancel"]
    job_id: JobId


class Ping(BaseModel):
    type: Literal["ping"]


ClientMessage = Annotated[Subscribe | Unsubscribe | Cancel | Ping, Field(discriminator="type")]
client_message = TypeAdapter(ClientMessage)
