"""Prepared WebSocket frames: one event, framed once, written as the same bytes to every socket that follows it.

Why: through ASGI, each socket's copy of an event costs a task wake-up, a `send` call down Starlette and uvicorn,
and its own framing: 35-55 µs of the web process per socket on this project's benchmark machine, so one event took
70-110 ms to reach 2,000 sockets (docs/benchmarks.md, fan-out). A server-to-client text frame is unmasked, and
compression is off, so its bytes are the same for every socket that reads the same language: they are built once
and written straight to each connection's transport from the publishing loop (as gorilla/websocket's
PreparedMessage does).

ASGI has no such call, so `PreparedFrameProtocol` (uvicorn's sans-I/O WebSocket protocol, which `oldphoto serve`
runs) offers it to the app as the ASGI extension `EXTENSION`: `write(frame) -> bool`. It writes only when nothing
can be out of order or pile up: the handshake is done, no close was sent, and the transport is not holding back
(a slow reader's events go to its bounded, coalescing outbox instead, as before). Under another ASGI server the
extension is absent and every event takes the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from oldphoto.protocol import OutEvent

EXTENSION = "oldphoto.websocket.prepared_frames"
# Write straight to a transport only while it holds less than this unsent; beyond it the reader is slow.
DIRECT_WRITE_LIMIT = 16 * 1024

FrameWriter = Callable[[bytes], bool]


def text_frame(text: str) -> bytes:
    """A complete, unmasked, uncompressed server-to-client text frame (RFC 6455 section 5.2): FIN and the text
    opcode, the payload's length in 7, 7+16 or 7+64 bits, the payload. Written out rather than through websockets'
    `Frame.serialize`, which checks and builds in Python what a live place (one per waiting reader at every move of
    the queue) does not need: a seventh of the time (tests/server/test_prepared.py compares the two)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class PreparedFrames:
    """The latest event's frame per language: a publish reaches its followers one after another, all in one go."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[OutEvent, bytes]] = {}

    def frame(self, event: OutEvent, lang: str) -> bytes:
        latest = self._latest.get(lang)
        if latest is not None and latest[0] is event:
            return latest[1]
        frame = text_frame(event.wire_text(lang))
        self._latest[lang] = (event, frame)
        return frame


class PreparedFrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, offering `write(frame)` to the app under `EXTENSION`."""

    def handle_connect(self, event: object) -> None:
        super().handle_connect(event)  # type: ignore[arg-type]
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = {"write": self.write_prepared}

    def write_prepared(self, frame: bytes) -> bool:
        """Write a prepared frame now, or say False so the caller queues the message instead."""
        if not self.handshake_complete or self.close_sent or self.disconnected or not self.writable.is_set():
            return False
        if self.transport.is_closing() or self.transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
            return False
        self.transport.write(frame)
        return True


def frame_writer(scope: Mapping[str, Any]) -> FrameWriter | None:
    extension = scope.get("extensions", {}).get(EXTENSION)
    return extension.get("write") if isinstance(extension, dict) else None
