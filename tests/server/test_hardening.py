"""The rest of issue 11's list (item 6) against a real `oldphoto serve` process: the per-user stream cap under
concurrent requests, SSE streams ended by token expiry, log redaction of percent-encoded names, header, idle and
first-message deadlines, `/api/models` without paths, and the sweep of upload files a killed process left behind.

The server runs with short deadlines (1 s) so that the tests of them are quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.server import ServerProcess, run_async, start_server
from tests.server.test_limits import comfy, png_bytes

SECRET = "hardening-secret-0123456789-0123456789-abcdef"
DEADLINE_S = 1.0
CAP = 16  # progress streams per user, WebSockets and SSE together (server/hub.py)
STALE = ("upload-abc123", "upload-killed-mid-request")


def token(user: str, ttl: float = 600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")


def client(server: ServerProcess, user: str, ttl: float = 600) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token(user, ttl)}"}, timeout=30)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def checkpoint(root: Path) -> Path:
    """The operator's own checkpoint, by path: `/api/models` must not show where it is."""
    path = root / "operator-secret-place" / "my-ddcolor.pth"
    path.parent.mkdir()
    path.write_bytes(b"not really weights")
    return path


@pytest.fixture(scope="module")
def models_dir(root: Path) -> Path:
    folder = root / "models"
    (folder / "realesrgan").mkdir(parents=True)
    (folder / "ddcolor_paper_tiny.pth").write_bytes(b"cached weights")  # a cached known model: it has a path
    for suffix in (".param", ".bin"):  # an operator's own Real-ESRGAN pair
        (folder / "realesrgan" / f"operator-net-x2{suffix}").write_bytes(b"x")
    return folder


@pytest.fixture(scope="module")
def data_dir(root: Path) -> Path:
    """A data dir as a SIGKILL left it: upload spool files nobody will finish."""
    folder = root / "data"
    (folder / "tmp" / "upload-a-directory").mkdir(parents=True)
    for name in STALE:
        (folder / "tmp" / name).write_bytes(b"\xff" * 4096)
    (folder / "tmp" / "not-an-upload").write_bytes(b"kept")
    os.symlink(folder / "tmp" / "not-an-upload", folder / "tmp" / "upload-a-link")
    return folder


@pytest.fixture(scope="module")
def hardened(data_dir: Path, models_dir: Path, checkpoint: Path) -> Iterator[ServerProcess]:
    env = {
        "OLDPHOTO_JWT_SECRET": SECRET,
        "OLDPHOTO_TEST_NODES": "1",
        "OLDPHOTO_MODELS_DIR": str(models_dir),
        "OLDPHOTO_MODEL": str(checkpoint),
        "OLDPHOTO_HEADER_TIMEOUT_S": str(DEADLINE_S),
        "OLDPHOTO_KEEP_ALIVE_S": "1",
        "OLDPHOTO_WS_FIRST_MESSAGE_S": str(DEADLINE_S),
        "OLDPHOTO_SSE_HEARTBEAT_S": "0.5",
        "HF_HUB_OFFLINE": "1",
    }
    server = start_server(data_dir, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def long_job(hardened: ServerProcess) -> Iterator[tuple[str, str]]:
    """(owner, job id) of a job that runs for a minute: its streams stay open. Cancelled at the end."""
    owner = "long-runner"
    with client(hardened, owner) as http:
        workflow = json.dumps(comfy(("Pause", {"seconds": 60})))
        response = http.post("/api/jobs", files={"file": ("p.png", png_bytes(16, 12))}, data={"workflow": workflow})
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]
        yield owner, job
        http.delete(f"/api/jobs/{job}")


# ------------------------------------------------------------------------------ one cap, counted at once


async def _open_streams(server: ServerProcess, bearer: str, job: str, count: int) -> tuple[list[int], list[str]]:
    """`count` event streams asked for all at once; their statuses and the codes of the refused ones."""
    limits = httpx.Limits(max_connections=count + 8)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30, limits=limits) as http:
        requests = [http.build_request("GET", f"/api/jobs/{job}/events") for _ in range(count)]
        responses = await asyncio.gather(*(http.send(r, stream=True) for r in requests))
        try:
            codes = []
            for response in responses:
                if response.status_code != 200:
                    codes.append(json.loads(await response.aread())["code"])
            statuses = [r.status_code for r in responses]
            # While the 16 are open, a WebSocket of the same user is refused too: one cap for both.
            try:
                async with websockets.connect(f"{server.ws_url}/ws/progress", subprotocols=["bearer", bearer], open_timeout=10):  # type: ignore[list-item]
                    statuses.append(101)
            except websockets.InvalidStatus as refused:
                statuses.append(refused.response.status_code)
            return statuses, codes
        finally:
            await asyncio.gather(*(r.aclose() for r in responses))


def test_concurrent_event_streams_of_one_user_get_at_most_16(hardened: ServerProcess, long_job: tuple[str, str]) -> None:
    owner, job = long_job
    bearer = token(owner)
    statuses, codes = run_async(_open_streams(hardened, bearer, job, 40))
    streams, socket_status = statuses[:-1], statuses[-1]
    assert streams.count(200) == CAP, streams
    assert streams.count(429) == 40 - CAP and set(codes) == {"too_many_streams"}, (streams, codes)
    assert socket_status == 403, "a WebSocket got past a cap its user's event streams had filled"
    # Every place is given back when the streams end, refused or not.
    deadline = time.monotonic() + 5
    while True:
        with client(hardened, owner) as http, http.stream("GET", f"/api/jobs/{job}/events") as response:
            if response.status_code == 200:
                break
        assert time.monotonic() < deadline, "closed streams did not give their places back"
        time.sleep(0.1)


async def _open_sockets(server: ServerProcess, bearer: str, count: int) -> list[int]:
    async def one() -> tuple[int, object]:
        try:
            ws = await websockets.connect(f"{server.ws_url}/ws/progress", subprotocols=["bearer", bearer], open_timeout=10)  # type: ignore[list-item]
        except websockets.InvalidStatus as refused:
            return refused.response.status_code, None
        return 101, ws

    opened = await asyncio.gather(*(one() for _ in range(count)))
    for _, ws in opened:
        if ws is not None:
            await ws.close()  # type: ignore[attr-defined]
    return [status for status, _ in opened]


def test_concurrent_websocket_handshakes_of_one_user_get_at_most_16(hardened: ServerProcess) -> None:
    statuses = run_async(_open_sockets(hardened, token("many-tabs-at-once"), 40))
    assert statuses.count(101) == CAP and statuses.count(403) == 40 - CAP, statuses


# ------------------------------------------------------------------------------------ token expiry on SSE


def test_an_event_stream_ends_when_its_token_expires(hardened: ServerProcess, long_job: tuple[str, str]) -> None:
    owner, job = long_job
    started = time.monotonic()
    with client(hardened, owner, ttl=2) as http, http.stream("GET", f"/api/jobs/{job}/events", timeout=20) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())  # ends by itself: the job runs for a minute
    took = time.monotonic() - started
    assert b"data: {" in body, "the stream delivered nothing before the token expired"
    assert body.endswith(b'event: token_expired\ndata: {"error": "Your session has expired; start a new one.", "code": "token_expired"}\n\n'), body[-300:]
    assert 0.5 < took < 6, f"the stream ended {took:.1f} s after it opened with a token valid for about 2 s"


# ------------------------------------------------------------------------------------------- redaction


def test_a_percent_encoded_token_name_never_reaches_the_logs(hardened: ServerProcess) -> None:
    secret_token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600, "purpose": "redaction"}, SECRET, algorithm="HS256")
    # The server reads `%74oken` as `token` and `%65yJ` as `eyJ` (the query is percent-decoded), so this is a working
    # token, and nothing in its raw spelling looks like one...
    with connect(f"{hardened.ws_url}/ws/progress?%74oken=%65{secret_token[1:]}") as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    # ...as are these, to logging: mixed case, an encoded value, and a token where no name would give it away.
    httpx.get(f"{hardened.url}/api/jobs?%54%4F%4B%45%4E={secret_token}")
    httpx.get(f"{hardened.url}/api/jobs?token={''.join(f'%{b:02X}' for b in secret_token.encode())}")
    httpx.get(f"{hardened.url}/api/jobs?x={secret_token}")
    time.sleep(0.3)
    log = hardened.log()
    for part in secret_token.split("."):
        assert part[1:] not in log, "a part of the token reached the log"
    assert "%74oken=[redacted]" in log


# ------------------------------------------------------------------------------------------- deadlines


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within `seconds`, and what it sent before."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def test_a_connection_that_sends_nothing_is_closed(hardened: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", hardened.port)) as sock:
        started = time.monotonic()
        closed, _ = _closed_within(sock, DEADLINE_S + 3)
        assert closed, "an idle connection was held past the header deadline"
        assert time.monotonic() - started >= DEADLINE_S * 0.8


def test_slow_headers_are_cut_off_and_quick_ones_are_not(hardened: ServerProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hardened.port)) as sock:
        started = time.monotonic()
        sent = 0
        try:
            for byte in request:  # slow-loris: a byte every 0.1 s would take 6 s
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.1)
                if time.monotonic() - started > DEADLINE_S + 3:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, received = _closed_within(sock, DEADLINE_S + 3)
        assert closed and b"HTTP/1.1 200" not in received, (sent, received[:100])
        assert time.monotonic() - started < DEADLINE_S + 3
    with socket.create_connection(("127.0.0.1", hardened.port)) as sock:  # all at once: answered
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_an_idle_keep_alive_connection_is_closed(hardened: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", hardened.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        closed, _ = _closed_within(sock, 4)
        assert closed, "an idle keep-alive connection was held past timeout_keep_alive"


def test_a_websocket_that_says_nothing_is_closed_and_one_that_speaks_is_not(hardened: ServerProcess) -> None:
    with connect(f"{hardened.ws_url}/ws/progress", subprotocols=["bearer", token("silent")], open_timeout=10) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=DEADLINE_S + 5)
        assert ws.close_code == 1008
    with connect(f"{hardened.ws_url}/ws/progress", subprotocols=["bearer", token("talker")], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
        time.sleep(DEADLINE_S + 0.5)
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_a_long_event_stream_outlives_the_header_deadline(hardened: ServerProcess, long_job: tuple[str, str]) -> None:
    owner, job = long_job
    with client(hardened, owner) as http, http.stream("GET", f"/api/jobs/{job}/events", timeout=10) as response:
        assert response.status_code == 200
        started, received = time.monotonic(), b""
        for chunk in response.iter_bytes():
            received += chunk
            if time.monotonic() - started > DEADLINE_S * 3:
                break
    assert b": heartbeat" in received or received.count(b"data:") > 3


# ---------------------------------------------------------------------------------- what is not shown


def test_models_show_names_not_paths(hardened: ServerProcess, models_dir: Path, checkpoint: Path) -> None:
    response = httpx.get(f"{hardened.url}/api/models")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == "custom", "the operator's checkpoint path (OLDPHOTO_MODEL) is shown"
    names = {entry["name"] for entry in body["models"]}
    assert {"ddcolor_paper_tiny", "operator-net-x2"} <= names
    assert next(e for e in body["models"] if e["name"] == "ddcolor_paper_tiny")["cached"] is True
    assert all("path" not in entry for entry in body["models"])
    for place in (str(models_dir), str(checkpoint.parent), "site-packages", "/root", "/home"):
        assert place not in response.text, place


# ------------------------------------------------------------------------------------------- the sweep


def test_upload_files_left_by_a_killed_process_are_removed_at_start(hardened: ServerProcess, data_dir: Path) -> None:
    left = {p.name for p in (data_dir / "tmp").iterdir()}
    assert not left & set(STALE), left
    assert "upload-a-link" not in left and (data_dir / "tmp" / "not-an-upload").read_bytes() == b"kept"
    assert "upload-a-directory" in left  # never ours: left alone
    assert "removed 3 upload file(s)" in hardened.log()
