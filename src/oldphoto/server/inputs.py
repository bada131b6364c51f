"""Values a client sends in headers and query strings, parsed strictly: a malformed one is a 4xx, never a 500.

Why not `str.isdigit()` and `int()`: `isdigit` accepts '²' and other Unicode digits that `int` then refuses, and a
5000-digit number trips Python's integer-string limit; a value past 2^63 passes both and fails later in the store.
"""

from __future__ import annotations

import re

from oldphoto.errors import BadInput
from oldphoto.jobs.errors import JobNotFound
from oldphoto.protocol.client import JOB_ID_PATTERN, MAX_SEQ

_SEQ = re.compile(r"[0-9]{1,19}")  # ASCII digits only; 19 digits hold every value up to MAX_SEQ
_JOB_ID = re.compile(JOB_ID_PATTERN)


class InvalidRequest(BadInput):
    code = "invalid_request"


def parse_seq(value: str | None, name: str) -> int:
    """A `seq` from a header or query (`Last-Event-ID`, `after_seq`): 0 when absent or empty."""
    if value is None or value == "":
        return 0
    if not _SEQ.fullmatch(value) or int(value) > MAX_SEQ:
        raise InvalidRequest(f"{name} must be a whole number from 0 to {MAX_SEQ}.")
    return int(value)


def wants_metrics(value: str | None) -> bool:
    """`?metrics=`: a job's live metrics events are sent only to readers who ask (1, true, yes, on)."""
    return value is not None and value.lower() in ("1", "true", "yes", "on")


def job_id(value: str) -> str:
    """A job id from a path: one that cannot be a job id is simply not found (as another user's job is)."""
    if not _JOB_ID.fullmatch(value):
        raise JobNotFound()
    return value
