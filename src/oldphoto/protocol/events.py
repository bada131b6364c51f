"""Server-to-client events of the progress protocol (SPEC "Progress protocol").

The engine says `Note`s; the job system stamps them with `job_id`, `seq` and `ts` into `JobEvent`s, stores them and
fans them out. Sentences are kept as a message key plus parameters and rendered in the reader's language at the edge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr

from oldphoto.protocol.i18n import DEFAULT_LANG, translate
from oldphoto.protocol.metrics import JobMetrics, Usage

EventType = Literal["queued", "progress", "complete", "error", "cancelled", "pong", "preview", "metrics"]
Stage = Literal["upload", "queued", "preprocess", "load_model", "inference", "postprocess", "complete"]
# `comfyui`: a node of a ComfyUI prompt with no step of its own here (docs/comfyui.md).
Source = Literal["colorize", "denoise", "upscale", "sharpen", "system", "comfyui"]
FINAL_TYPES: frozenset[str] = frozenset({"complete", "error", "cancelled"})
# Never coalesced or dropped by a slow connection's queue (a live event is: only its newest value matters).
ESSENTIAL_TYPES: frozenset[str] = FINAL_TYPES | {"queued"}


class PrecisionUsed(BaseModel):
    """The number format DDColor runs a pass in, on the `inference` stage event (docs/protocol.md, "Precision"):
    the precision asked for, the format used, and why (a code; `precision.<reason>` is its sentence)."""

    requested: Literal["faithful", "fast"]
    dtype: Literal["float32", "bfloat16", "float16"]
    reason: str = Field(max_length=32)


class PreviewImage(BaseModel):
    """A `preview` event's picture (docs/protocol.md, "Previews"): the running job's latest look, at most 256 px on
    its long side. The event names it; the bytes are kept apart (the job's latest preview only) and served at `url`,
    which the job system fills in (the engine knows no URLs)."""

    url: str | None = None
    width: int = Field(ge=1, le=256)
    height: int = Field(ge=1, le=256)
    media_type: Literal["image/jpeg"] = "image/jpeg"
    frame: int = Field(ge=1)  # 1, 2, 3, ... within a run of the job: a newer frame is a newer picture


class Note(BaseModel):
    """What a running workflow says: one stage change or one step of progress."""

    type: EventType = "progress"
    stage: Stage
    source: Source = "system"
    node: str | None = None
    message_key: str
    message_params: dict[str, Any] = Field(default_factory=dict)
    progress: int = Field(ge=0, le=100)
    step_progress: float | None = Field(default=None, ge=0.0, le=1.0)
    eta_s: float | None = None
    precision: PrecisionUsed | None = None
    preview: PreviewImage | None = None


class JobEvent(Note):
    job_id: str
    seq: int = Field(ge=1)
    ts: float = Field(default_factory=time.time)
    position: int | None = None
    result_url: str | None = None
    error: str | None = None
    code: str | None = None
    # `queued`: the seconds this job is expected to wait before it starts (jobs/waits.py).
    wait_s: float | None = None
    # A final event: what the run used and how fast it went (protocol/metrics.py), where the job ran.
    metrics: JobMetrics | None = None

    # One event goes to every follower: its JSON is made once per language, not once per socket.
    _wire_text: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    live: ClassVar[bool] = False

    @property
    def is_essential(self) -> bool:
        return self.type in ESSENTIAL_TYPES

    def message(self, lang: str = DEFAULT_LANG) -> str:
        return translate(self.message_key, lang, **self.message_params)

    def to_wire(self, lang: str = DEFAULT_LANG) -> dict[str, Any]:
        wire = self.model_dump(exclude={"message_key", "message_params"}, exclude_none=True)
        wire["message"] = self.message(lang)
        if self.type == "error":
            wire["error"] = translate(self.message_key, lang, **self.message_params) if self.error is None else self.error
        return wire

    def wire_text(self, lang: str = DEFAULT_LANG) -> str:
        text = self._wire_text.get(lang)
        if text is None:
            text = self._wire_text[lang] = json.dumps(self.to_wire(lang), ensure_ascii=False)
        return text


@dataclass(frozen=True, slots=True)
class LivePlace:
    """A live `queued` event: a place in the queue that changed since the job's last recorded event.

    Not in the durable log and never replayed; it repeats the `seq` of the last recorded event its reader got, and a
    subscriber gets the current place when it subscribes (docs/protocol.md, "Live and recorded events"). One is
    made per waiting reader at every move of the queue, so it is a plain object whose wire text is made directly,
    in the same shape as a `JobEvent`'s (tested against it), not a validated model.
    """

    job_id: str
    position: int
    ts: float
    seq: int = 1
    progress: int = 0
    message_key: str = "queued"  # or "queued.no_worker"
    wait_s: float | None = None
    type: ClassVar[str] = "queued"
    stage: ClassVar[str] = "queued"
    live: ClassVar[bool] = True
    is_final: ClassVar[bool] = False
    is_essential: ClassVar[bool] = False  # only the newest place matters: a slow reader's outbox may replace it

    def message(self, lang: str = DEFAULT_LANG) -> str:
        return translate(self.message_key, lang, position=self.position)

    def wire_text(self, lang: str = DEFAULT_LANG) -> str:
        # The JSON of a recorded `queued` event's wire form plus `"live": true`, written out: at 10,000 waiting
        # readers this runs 10,000 times per move of the queue, and json.dumps of the dict costs three times more.
        return (
            f'{{"type": "queued", "stage": "queued", "source": "system", "progress": {self.progress:d}, '
            f'"job_id": {_json_string(self.job_id)}, "seq": {self.seq:d}, "ts": {self.ts!r}, "position": {self.position:d}, '
            f'{"" if self.wait_s is None else f"{_json_wait(self.wait_s)}, "}"live": true, "message": {_json_string(self.message(lang))}}}'
        )


_json_string = json.encoder.encode_basestring  # a str as a JSON string (C), as json.dumps(ensure_ascii=False) writes it


def _json_wait(wait_s: float) -> str:
    return f'"wait_s": {float(wait_s)!r}'

@dataclass(frozen=True, slots=True)
class LiveMetrics:
    """A live `metrics` event: a running job's memory and speed, about once a second (protocol/metrics.py).

    Like a live place it is never recorded nor replayed: a reader who missed one waits for the next, and a slow
    reader's outbox keeps only the newest. `seq` repeats the last recorded event its reader got.
    """

    job_id: str
    usage: Usage
    ts: float
    seq: int = 1
    type: ClassVar[str] = "metrics"
    live: ClassVar[bool] = True
    is_final: ClassVar[bool] = False
    is_essential: ClassVar[bool] = False

    def for_reader(self, seq: int) -> LiveMetrics:
        return LiveMetrics(self.job_id, self.usage, self.ts, seq)

    def to_wire(self, lang: str = DEFAULT_LANG) -> dict[str, Any]:
        return {
            "type": "metrics",
            "job_id": self.job_id,
            "seq": self.seq,
            "ts": self.ts,
            "live": True,
            "metrics": self.usage.model_dump(exclude_none=True),
        }

    def wire_text(self, lang: str = DEFAULT_LANG) -> str:
        return json.dumps(self.to_wire(lang), ensure_ascii=False)


# What goes out to a reader: a recorded event, or a live one (a place, a job's metrics).
OutEvent = JobEvent | LivePlace | LiveMetrics


def pong() -> dict[str, Any]:
    return {"type": "pong", "ts": time.time()}
