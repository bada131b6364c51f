"""The wire protocol of SPEC: the one place that defines what goes over WebSocket and SSE."""

from oldphoto.protocol.client import Cancel, ClientMessage, Ping, Subscribe, Unsubscribe, client_message
from oldphoto.protocol.events import (
    ESSENTIAL_TYPES,
    FINAL_TYPES,
    EventType,
    JobEvent,
    LiveMetrics,
    LivePlace,
    Note,
    OutEvent,
    PrecisionUsed,
    PreviewImage,
    Source,
    Stage,
    pong,
)
from oldphoto.protocol.i18n import LANGUAGES, pick_language, translate
from oldphoto.protocol.metrics import JobMetrics, Speed, StageTime, Usage

__all__ = [
    "ESSENTIAL_TYPES",
    "FINAL_TYPES",
    "LANGUAGES",
    "Cancel",
    "ClientMessage",
    "EventType",
    "JobEvent",
    "JobMetrics",
    "LiveMetrics",
    "LivePlace",
    "Note",
    "OutEvent",
    "Ping",
    "PrecisionUsed",
    "PreviewImage",
    "Source",
    "Speed",
    "Stage",
    "StageTime",
    "Subscribe",
    "Unsubscribe",
    "Usage",
    "client_message",
    "pick_language",
    "pong",
    "translate",
]
