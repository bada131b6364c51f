"""The wire protocol of SPEC: the one place that defines what goes over WebSocket and SSE."""

from oldphoto.protocol.client import Cancel, ClientMessage, Ping, Subscribe, Unsubscribe, client_message
from oldphoto.protocol.events import (
    ESSENTIAL_TYPES,
    FINAL_TYPES,
    EventType,
    JobEvent,
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

__all__ = [
    "ESSENTIAL_TYPES",
    "FINAL_TYPES",
    "LANGUAGES",
    "Cancel",
    "ClientMessage",
    "EventType",
    "JobEvent",
    "LivePlace",
    "Note",
    "OutEvent",
    "Ping",
    "PrecisionUsed",
    "PreviewImage",
    "Source",
    "Stage",
    "Subscribe",
    "Unsubscribe",
    "client_message",
    "pick_language",
    "pong",
    "translate",
]
