"""ComfyUI's WebSocket messages as typed events (ComfyUI 0.3.x, server.py `send_sync`; binary frames for previews).

Text frames are `{"type": ..., "data": {...}}`; each known type becomes a frozen dataclass, anything else `Other`,
so a newer ComfyUI that says more is not an error. A binary frame is a 4-byte big-endian event number, then (for a
preview) a 4-byte image format and the image's bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True, slots=True)
class Status:
    queue_remaining: int


@dataclass(frozen=True, slots=True)
class ExecutionStart:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class ExecutionCached:
    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Executing:
    """A node begins (`node` None: the prompt is done, in ComfyUI versions that still say so)."""

    prompt_id: str
    node: str | None


@dataclass(frozen=True, slots=True)
class Progress:
    prompt_id: str
    node: str
    value: float
    max: float


@dataclass(frozen=True, slots=True)
class NodeState:
    value: float
    max: float
    state: str  # pending, running, finished, error


@dataclass(frozen=True, slots=True)
class ProgressState:
    prompt_id: str
    nodes: dict[str, NodeState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Executed:
    prompt_id: str
    node: str
    output: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExecutionSuccess:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class ExecutionError:
    prompt_id: str
    node: str | None
    node_type: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted:
    prompt_id: str
    node: str | None


@dataclass(frozen=True, slots=True)
class Preview:
    """A picture of the node running now. ComfyUI's plain preview frame names no prompt: the instance's running
    prompt is meant (`prompt_id` is given only by the metadata form)."""

    image: bytes
    mime: str
    prompt_id: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Other:
    type: str


ComfyEvent = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | Preview
    | Other
)


def parse_text(frame: str) -> ComfyEvent:
    message = json.loads(frame)
    kind, data = str(message.get("type", "")), message.get("data") or {}
    prompt = str(data.get("prompt_id") or "")
    match kind:
        case "status":
            return Status(int(((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining", 0)))
        case "execution_start":
            return ExecutionStart(prompt)
        case "execution_cached":
            return ExecutionCached(prompt, tuple(str(n) for n in data.get("nodes") or ()))
        case "executing":
            node = data.get("node")
            return Executing(prompt, None if node is None else str(node))
        case "progress":
            return Progress(prompt, str(data.get("node")), float(data.get("value", 0)), float(data.get("max", 1) or 1))
        case "progress_state":
            nodes = {
                str(node): NodeState(float(s.get("value", 0)), float(s.get("max", 1) or 1), str(s.get("state", "")))
                for node, s in (data.get("nodes") or {}).items()
            }
            return ProgressState(prompt, nodes)
        case "executed":
            return Executed(prompt, str(data.get("node")), data.get("output") or {})
        case "execution_success":
            return ExecutionSuccess(prompt)
        case "execution_error":
            node, node_type = data.get("node_id"), data.get("node_type")
            text = str(data.get("exception_message") or data.get("exception_type") or "the ComfyUI node failed").strip()
            return ExecutionError(prompt, None if node is None else str(node), None if node_type is None else str(node_type), text)
        case "execution_interrupted":
            node = data.get("node_id")
            return ExecutionInterrupted(prompt, None if node is None else str(node))
        case _:
            return Other(kind)


def parse_binary(frame: bytes) -> ComfyEvent:
    if len(frame) < 8:
        return Other("binary")
    (kind,) = struct.unpack(">I", frame[:4])
    if kind == PREVIEW_IMAGE:
        (image_format,) = struct.unpack(">I", frame[4:8])
        return Preview(frame[8:], IMAGE_FORMATS.get(image_format, "image/jpeg"))
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack(">I", frame[4:8])
        meta = json.loads(frame[8 : 8 + length])
        return Preview(frame[8 + length :], str(meta.get("image_type", "image/jpeg")), meta.get("prompt_id"), meta.get("node_id"))
    return Other(f"binary:{kind}")
