"""comfy/events.py: ComfyUI's WebSocket frames, as ComfyUI 0.3.64's server.py writes them."""

from __future__ import annotations

import json
import struct

from oldphoto.comfy.events import (
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    Other,
    Preview,
    Progress,
    ProgressState,
    Status,
    parse_binary,
    parse_text,
)


def frame(kind: str, data: dict) -> str:
    return json.dumps({"type": kind, "data": data})


def test_text_frames_become_typed_events() -> None:
    assert parse_text(frame("status", {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "x"})) == Status(2)
    assert parse_text(frame("executing", {"node": "4", "display_node": "4", "prompt_id": "p"})) == Executing("p", "4")
    assert parse_text(frame("executing", {"node": None, "prompt_id": "p"})) == Executing("p", None)
    assert parse_text(frame("progress", {"value": 3, "max": 6, "prompt_id": "p", "node": "4"})) == Progress("p", "4", 3.0, 6.0)
    state = parse_text(frame("progress_state", {"prompt_id": "p", "nodes": {"4": {"value": 1, "max": 2, "state": "running"}}}))
    assert isinstance(state, ProgressState) and state.nodes["4"].value == 1
    error = parse_text(frame("execution_error", {"prompt_id": "p", "node_id": "3", "node_type": "X", "exception_message": "boom\n"}))
    assert error == ExecutionError("p", "3", "X", "boom")
    assert parse_text(frame("execution_interrupted", {"prompt_id": "p", "node_id": "4"})) == ExecutionInterrupted("p", "4")
    assert parse_text(frame("feature_flags", {})) == Other("feature_flags")


def test_binary_previews_with_and_without_metadata() -> None:
    jpeg = b"\xff\xd8jpeg"
    assert parse_binary(struct.pack(">II", 1, 1) + jpeg) == Preview(jpeg, "image/jpeg")
    meta = json.dumps({"node_id": "4", "prompt_id": "p"}).encode()
    with_meta = parse_binary(struct.pack(">II", 4, len(meta)) + meta + jpeg)
    assert with_meta == Preview(jpeg, "image/jpeg", "p", "4")
    assert parse_binary(b"\x00") == Other("binary")
