"""Prepared frames: uvicorn's protocol offers them to the app, they arrive as ordinary text messages, in order with
the app's own sends, and a reader that stops reading makes the writer decline rather than buffer without bound."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.sync.client import connect
from websockets.uri import parse_uri

from oldphoto.protocol import JobEvent
from oldphoto.server.prepared import PreparedFrameProtocol, PreparedFrames, frame_writer, text_frame
from tests.helpers.server import free_port

Scope = dict[str, Any]


class App:
    """A bare ASGI WebSocket app: on "go", it sends `count` messages, alternating prepared frames and ASGI sends."""

    def __init__(self) -> None:
        self.offered: bool | None = None
        self.declined = 0
        self.finished = threading.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        write = frame_writer(scope)
        self.offered = write is not None
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        command, _, count = message["text"].partition(" ")
        for i in range(int(count)):
            text = f"{i:06d}" + ("x" * 4000 if command == "flood" else "")
            if write is not None and i % 2 == 0:
                if not write(text_frame(text)):
                    self.declined += 1
                    await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "text": text})
            if command == "flood" and i % 64 == 0:
                await asyncio.sleep(0)
        self.finished.set()
        await receive()


@contextmanager
def served(app: App, ws: Any = PreparedFrameProtocol) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws=ws, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_prepared_frames_arrive_as_text_messages_in_order_with_ordinary_sends() -> None:
    app = App()
    with served(app) as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        ws.send("go 200")
        received = [ws.recv(timeout=10) for _ in range(200)]
    assert app.offered is True
    assert received == [f"{i:06d}" for i in range(200)]


def test_a_reader_that_stops_reading_makes_the_writer_decline() -> None:
    app = App()
    with served(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"), max_size=None)
        client.send_request(client.connect())
        sock.sendall(b"".join(client.data_to_send()))
        while client.state is not State.OPEN:  # the handshake's answer
            client.receive_data(sock.recv(4096))
            client.events_received()
        client.send_text(b"flood 10000")  # 40 MB, far more than the socket buffers hold while nobody reads
        sock.sendall(b"".join(client.data_to_send()))
        time.sleep(1.0)  # not reading
        assert app.declined > 0  # the transport filled up: frames were refused, not piled up in memory
        received: list[str] = []
        sock.settimeout(30)
        while len(received) < 10000:
            client.receive_data(sock.recv(1 << 16))
            received += [bytes(e.data).decode() for e in client.events_received() if isinstance(e, Frame) and e.opcode is Opcode.TEXT]
        assert app.finished.wait(30)
    assert [text[:6] for text in received] == [f"{i:06d}" for i in range(10000)]


def test_under_another_websocket_implementation_the_extension_is_absent() -> None:
    app = App()
    with served(app, ws="websockets-sansio") as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        ws.send("go 3")
        assert [ws.recv(timeout=10) for _ in range(3)] == ["000000", "000001", "000002"]
    assert app.offered is False


@pytest.mark.parametrize("text", ["", "{}", "x" * 125, "x" * 126, "é" * 200, "x" * 65_535, "x" * 65_536, "x" * 70_000])
def test_text_frame_is_the_rfc_6455_encoding_for_any_length(text: str) -> None:
    frame = text_frame(text)
    payload = text.encode()
    assert frame[0] == 0x81 and frame.endswith(payload)
    length = frame[1] & 0x7F
    assert (frame[1] & 0x80) == 0  # server frames are never masked
    if len(payload) < 126:
        assert length == len(payload)
    elif len(payload) < 65536:
        assert length == 126 and int.from_bytes(frame[2:4]) == len(payload)
    else:
        assert length == 127 and int.from_bytes(frame[2:10]) == len(payload)
    assert frame == Frame(Opcode.TEXT, payload).serialize(mask=False)  # websockets' own encoding, byte for byte


def test_one_event_is_framed_once_per_language() -> None:
    frames = PreparedFrames()
    first = JobEvent(job_id="j", seq=1, type="progress", stage="inference", message_key="inference", progress=40)
    second = JobEvent(job_id="j", seq=2, type="progress", stage="inference", message_key="inference", progress=41)
    english = frames.frame(first, "en")
    assert frames.frame(first, "en") is english
    chinese = frames.frame(first, "zh-CN")
    assert chinese != english and frames.frame(first, "en") is english
    assert frames.frame(second, "en") != english
    assert english == text_frame(first.wire_text("en"))
