"""Limits against a real `oldphoto serve` process (issue "Security", item 6): request rates, WebSocket caps,
workflow caps, and user input that must never become a path on the server.

The rate limits (src/oldphoto/server/ratelimit.py) are per address and per user, so every test speaks as its own
user from its own loopback address (Linux routes all of 127.0.0.0/8 to the loopback interface) and the tests do
not spend each other's budgets.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.helpers.server import ServerProcess, start_server

SECRET = "limits-test-secret-0123456789-0123456789-abcdef"
SUBSCRIBER = "subscriber"
SEEDED_JOBS = 66  # more than the 64 subscriptions one connection may hold
FINAL = {"succeeded", "failed", "cancelled"}
_addresses = itertools.count()


def token(user: str, ttl: int = 600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, SECRET, algorithm="HS256")


def next_address() -> str:
    n = next(_addresses)
    return f"127.0.{1 + n // 250}.{2 + n % 250}"


def http_client(server: ServerProcess, user: str | None, address: str | None = None) -> httpx.Client:
    """`user`'s client from `address` (a fresh loopback address unless given): its own rate-limit buckets."""
    headers = {"Authorization": f"Bearer {token(user)}"} if user else {}
    transport = httpx.HTTPTransport(local_address=address or next_address())
    return httpx.Client(base_url=server.url, headers=headers, transport=transport, timeout=30)


def socket_for(server: ServerProcess, user: str, query: str = "") -> ClientConnection:
    return connect(f"{server.ws_url}/ws/progress{query}", subprotocols=["bearer", token(user)], open_timeout=10)


def png_bytes(width: int = 40, height: int = 30, seed: int = 3) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def pixels_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def post_job(http: httpx.Client, **fields: str) -> httpx.Response:
    return http.post("/api/jobs", files={"file": ("photo.png", png_bytes(), "image/png")}, data=fields)


def wait_final(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = http.get(f"/api/jobs/{job_id}").json()
        if view["status"] in FINAL or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def close_code(ws: ClientConnection, timeout: float = 10) -> int | None:
    """Read until the server closes the connection; its close code."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
    return ws.close_code


def answer(ws: ClientConnection, message: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=timeout))


# --------------------------------------------------------------------------------------------- the server


def seed_jobs(data_dir: Path, owner: str, count: int) -> list[str]:
    """`count` finished (cancelled) jobs of `owner`, written to the store before the server starts.

    Through the API this would take minutes: job creation is limited to 30 a minute per user.
    """
    from oldphoto.jobs.lifecycle import JobStatus
    from oldphoto.jobs.store import JobStore, NewJob
    from oldphoto.protocol import JobEvent

    store = JobStore(f"sqlite:///{data_dir.resolve() / 'jobs.sqlite3'}")
    ids = []
    try:
        for _ in range(count):
            new = NewJob(owner=owner, workflow=json.dumps({"steps": "sharpen"}), input_path=str(data_dir / "inputs" / "none"))
            store.create(new, JobEvent(job_id=new.id, seq=1, stage="upload", message_key="upload", progress=0))
            store.append(new.id, {"type": "cancelled", "stage": "upload", "message_key": "cancelled", "progress": 0}, JobStatus.CANCELLED)
            ids.append(new.id)
    finally:
        store.close()
    return ids


@pytest.fixture(scope="module")
def limits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits")


@pytest.fixture(scope="module")
def subscriber_jobs(limits_root: Path) -> list[str]:
    (limits_root / "data").mkdir()
    return seed_jobs(limits_root / "data", SUBSCRIBER, SEEDED_JOBS)


@pytest.fixture(scope="module")
def limits_server(limits_root: Path, subscriber_jobs: list[str]) -> Iterator[ServerProcess]:
    env = {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_JWT_SECRET": SECRET, "OLDPHOTO_MODELS_DIR": str(limits_root / "models")}
    server = start_server(limits_root / "data", env)
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------- request rates


def test_sessions_are_limited_per_address(limits_server: ServerProcess) -> None:
    address = next_address()
    anonymous = http_client(limits_server, None, address)
    for i in range(30):
        response = anonymous.post("/api/session")
        assert response.status_code == 200, (i, response.text)
    refused = anonymous.post("/api/session")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "set-cookie" not in refused.headers
    # A forwarded-for header from an untrusted peer is not a way out of the bucket.
    spoofed = anonymous.post("/api/session", headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status_code == 429
    # The limit is per address: another one still gets a session.
    assert http_client(limits_server, None).post("/api/session").status_code == 200


def test_job_creation_is_limited_per_user(limits_server: ServerProcess) -> None:
    address = next_address()
    busy = http_client(limits_server, "busy-user", address)
    not_a_photo = {"file": ("notes.txt", b"just text", "text/plain")}
    for i in range(30):  # refused uploads count too: the limit is checked before the body is read
        assert busy.post("/api/jobs", files=not_a_photo).status_code == 415, i
    refused = busy.post("/api/jobs", files=not_a_photo)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Per user: the same user from elsewhere is still refused, another user from the same address is not.
    assert http_client(limits_server, "busy-user").post("/api/jobs", files=not_a_photo).status_code == 429
    assert http_client(limits_server, "calm-user", address).post("/api/jobs", files=not_a_photo).status_code == 415


def test_job_creation_is_limited_per_address(limits_server: ServerProcess) -> None:
    address = next_address()
    not_a_photo = {"file": ("notes.txt", b"just text", "text/plain")}
    for user in range(6):
        http = http_client(limits_server, f"crowd-{user}", address)
        for i in range(10):
            assert http.post("/api/jobs", files=not_a_photo).status_code == 415, (user, i)
    refused = http_client(limits_server, "crowd-new", address).post("/api/jobs", files=not_a_photo)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", refused.text
    assert "Retry-After" in refused.headers


def test_sessions_in_required_mode_are_refused_with_a_client_error(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", {"OLDPHOTO_AUTH": "required", "OLDPHOTO_JWT_SECRET": SECRET})
    try:
        response = http_client(server, None).post("/api/session")
        assert response.json()["code"] == "sessions_disabled"
        assert "set-cookie" not in response.headers
        assert 400 <= response.status_code < 500, response.status_code
    finally:
        server.stop()


def test_renewing_a_session_does_not_extend_a_short_lived_named_token(limits_server: ServerProcess) -> None:
    short = token("named-user", ttl=60)
    response = http_client(limits_server, None).post("/api/session", headers={"Cookie": f"oldphoto_session={short}"})
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], SECRET, algorithms=["HS256"])
    assert not (claims["sub"] == "named-user" and claims["exp"] > time.time() + 3600), claims


# ------------------------------------------------------------------------------------------ WebSocket caps


def test_a_message_over_4_kb_closes_the_socket_with_1009(limits_server: ServerProcess) -> None:
    with socket_for(limits_server, "big-talker") as ws:
        at_limit = json.dumps({"type": "ping", "pad": ""})
        at_limit = json.dumps({"type": "ping", "pad": "x" * (4096 - len(at_limit))})
        assert len(at_limit.encode()) == 4096
        assert answer(ws, json.loads(at_limit))["type"] == "pong"
        ws.send(json.dumps({"type": "ping", "pad": "x" * 4097}))
        assert close_code(ws) == 1009
    with socket_for(limits_server, "big-talker") as ws:  # far over: refused by the protocol layer, same code
        ws.send(json.dumps({"type": "ping", "pad": "x" * 200_000}))
        assert close_code(ws) == 1009


def test_more_than_20_messages_a_second_closes_the_socket_with_1008(limits_server: ServerProcess) -> None:
    with socket_for(limits_server, "steady-talker") as ws:
        for _ in range(3):  # 15 a second, for three seconds: within the limit
            for _ in range(15):
                ws.send(json.dumps({"type": "ping"}))
            assert all(json.loads(ws.recv(timeout=10))["type"] == "pong" for _ in range(15))
            time.sleep(1.05)
    with socket_for(limits_server, "chatty-talker") as ws:
        for _ in range(40):
            ws.send(json.dumps({"type": "ping"}))
        pongs = 0
        with pytest.raises(ConnectionClosed):
            while True:
                pongs += json.loads(ws.recv(timeout=10))["type"] == "pong"
        assert ws.close_code == 1008
        # 20 are answered (more only if the server took over a second to read the first 20)
        assert 20 <= pongs < 40, pongs


def test_at_most_64_subscriptions_on_one_connection(limits_server: ServerProcess, subscriber_jobs: list[str]) -> None:
    jobs = subscriber_jobs
    assert len(jobs) == SEEDED_JOBS

    def subscribe_all(ws: ClientConnection, job_ids: list[str]) -> list[dict[str, Any]]:
        """Subscribe to each, 16 at a time: each burst's replays are read before a pause of a second, so the
        server never counts more than 16 of these messages in one second, however late it reads them."""
        received: list[dict[str, Any]] = []
        for start in range(0, len(job_ids), 16):
            burst = job_ids[start : start + 16]
            for job_id in burst:
                ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "after_seq": 0}))
            while not set(burst) <= {e.get("job_id") for e in received if e["type"] in ("cancelled", "error")}:
                received.append(json.loads(ws.recv(timeout=30)))
            time.sleep(1.05)
        return received

    with socket_for(limits_server, SUBSCRIBER) as ws:
        events = subscribe_all(ws, jobs[:64])
        assert {e["job_id"] for e in events if e["type"] == "cancelled"} == set(jobs[:64])
        assert not [e for e in events if e["type"] == "error"]
        refused = answer(ws, {"type": "subscribe", "job_id": jobs[64], "after_seq": 0})
        assert refused["type"] == "error" and refused["code"] == "too_many_subscriptions" and refused["job_id"] == jobs[64]
        # Subscribing again to a followed job is no new subscription; freeing a slot makes room for another.
        assert answer(ws, {"type": "subscribe", "job_id": jobs[0], "after_seq": 1})["type"] == "cancelled"
        ws.send(json.dumps({"type": "unsubscribe", "job_id": jobs[1]}))
        replay = answer(ws, {"type": "subscribe", "job_id": jobs[65], "after_seq": 0})
        assert replay["job_id"] == jobs[65] and replay["type"] != "error", replay


def test_more_than_16_connections_per_user_are_refused_at_the_handshake(limits_server: ServerProcess) -> None:
    sockets = [socket_for(limits_server, "many-tabs") for _ in range(16)]
    try:
        for ws in sockets:
            assert answer(ws, {"type": "ping"})["type"] == "pong"
        with pytest.raises(InvalidStatus) as refused:
            socket_for(limits_server, "many-tabs")
        assert refused.value.response.status_code == 403
        # Per user: someone else still connects; and a closed connection frees its place.
        with socket_for(limits_server, "one-tab") as other:
            assert answer(other, {"type": "ping"})["type"] == "pong"
        sockets.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                sockets.append(socket_for(limits_server, "many-tabs"))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline, "a closed connection did not free its place"
                time.sleep(0.1)
        assert answer(sockets[-1], {"type": "ping"})["type"] == "pong"
    finally:
        for ws in sockets:
            ws.close()


def pause_workflow(seconds: float) -> str:
    return json.dumps(comfy(("Pause", {"seconds": seconds})))


def test_event_streams_per_user_are_capped_like_websockets(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "many-streams")
    job = post_job(http, workflow=pause_workflow(20)).json()["job_id"]
    streams: list[tuple[httpx.Client, httpx.Response]] = []
    try:
        for _ in range(16):
            viewer = http_client(limits_server, "many-streams")
            streams.append((viewer, viewer.send(viewer.build_request("GET", f"/api/jobs/{job}/events"), stream=True)))
        assert [r.status_code for _, r in streams] == [200] * 16
        viewer = http_client(limits_server, "many-streams")
        extra = viewer.send(viewer.build_request("GET", f"/api/jobs/{job}/events"), stream=True)
        streams.append((viewer, extra))
        assert 400 <= extra.status_code < 500, f"the 17th event stream of one user was answered {extra.status_code}"
    finally:
        http.delete(f"/api/jobs/{job}")
        for viewer, response in streams:
            response.close()
            viewer.close()


def test_an_event_stream_of_a_finished_job_that_has_nothing_left_ends(limits_server: ServerProcess, subscriber_jobs: list[str]) -> None:
    job = subscriber_jobs[-1]  # cancelled: events 1 (upload) and 2 (cancelled)
    http = http_client(limits_server, SUBSCRIBER)
    with http.stream("GET", f"/api/jobs/{job}/events", headers={"Last-Event-ID": "2"}, timeout=3) as response:
        assert response.status_code in (200, 204)
        try:
            body = b"".join(response.iter_bytes())
        except httpx.ReadTimeout:
            body = None
    assert body is not None, "the stream of a finished job stayed open with nothing left to send"
    assert b"data:" not in body


# -------------------------------------------------------------------------------------------- workflow caps


def comfy(*steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """LoadImage -> steps... -> SaveImage in ComfyUI's API form; node ids are n0, n1, ..."""
    nodes: dict[str, Any] = {"n0": {"class_type": "LoadImage", "inputs": {}}}
    for i, (kind, params) in enumerate(steps, start=1):
        nodes[f"n{i}"] = {"class_type": kind, "inputs": {"image": [f"n{i - 1}", 0], **params}}
    nodes[f"n{len(steps) + 1}"] = {"class_type": "SaveImage", "inputs": {"images": [f"n{len(steps)}", 0]}}
    return nodes


def seed_form(load_name: str, *middle: dict[str, Any]) -> dict[str, Any]:
    nodes = [{"id": "load_image", "type": "LoadImage", "widgets_values": [load_name]}]
    previous = "load_image.image"
    for node in middle:
        nodes.append({**node, "inputs": {"image": previous}})
        previous = f"{node['id']}.output"
    nodes.append({"id": "save_output", "type": "SaveImage", "inputs": {"images": previous}})
    return {"nodes": nodes}


def refused_workflow(http: httpx.Client, workflow: str | dict[str, Any]) -> dict[str, Any]:
    text = workflow if isinstance(workflow, str) else json.dumps(workflow)
    response = post_job(http, workflow=text)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["code"] == "invalid_workflow", body
    return body


def test_a_workflow_over_64_kb_is_refused(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "big-workflow")
    text = json.dumps(comfy(("Sharpen", {})))
    under = text + " " * (64 * 1024 - len(text))
    assert post_job(http, workflow=under).status_code == 202
    body = refused_workflow(http, under + " ")
    assert "64 KB" in body["error"]


def test_the_64_kb_cap_counts_bytes_not_characters(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "wide-workflow")
    workflow = {**seed_form("input_image.png"), "note": "照" * 30_000}  # 30 000 characters, 90 000 bytes of UTF-8
    text = json.dumps(workflow, ensure_ascii=False)
    assert len(text) < 64 * 1024 < len(text.encode())
    refused_workflow(http, text)


def test_a_workflow_of_more_than_32_nodes_is_refused(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "long-workflow")
    thirty_two = comfy(*[("Sharpen", {"amount": 0.1})] * 30)
    assert len(thirty_two) == 32
    accepted = post_job(http, workflow=json.dumps(thirty_two))
    assert accepted.status_code == 202, accepted.text
    body = refused_workflow(http, comfy(*[("Sharpen", {"amount": 0.1})] * 31))
    assert "33 nodes" in body["error"]
    refused_workflow(http, {"steps": ",".join(["sharpen"] * 31)})
    assert post_job(http, steps=",".join(["sharpen"] * 31)).json()["code"] == "invalid_workflow"
    assert wait_final(http, accepted.json()["job_id"])["status"] == "succeeded"


OUT_OF_RANGE = [
    ("Denoise", {"strength": 1000}),
    ("Denoise", {"strength": -1}),
    ("Denoise", {"search_window": 10_001}),
    ("DDColor", {"input_size": 99999}),
    ("DDColor", {"input_size": 100}),  # not a multiple of 32
    ("Sharpen", {"radius": 1e9}),
    ("Sharpen", {"amount": float("nan")}),
    ("Sharpen", {"amount": float("inf")}),
    ("Upscale", {"tile": 99999}),
    ("Pause", {"seconds": 10_000}),
    ("Denoise", {"unexpected": 1}),
]


def test_out_of_range_parameters_are_refused_naming_the_node(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "knob-twister")
    for kind, params in OUT_OF_RANGE:
        body = refused_workflow(http, comfy((kind, params)))
        assert "'n1'" in body["error"], (kind, params, body)
    # The seed's form, positionally: Denoise's first widget is its strength, DDColor's second its input size.
    body = refused_workflow(http, seed_form("input_image.png", {"id": "strong_denoise", "type": "Denoise", "widgets_values": [1000]}))
    assert "'strong_denoise'" in body["error"]
    body = refused_workflow(http, seed_form("input_image.png", {"id": "ddcolor_node", "type": "DDColor", "widgets_values": ["realesr-animevideov3", 99999, False]}))
    assert "'ddcolor_node'" in body["error"]
    assert len(OUT_OF_RANGE) + 2 < 30  # one user's job budget for a minute


def test_a_load_image_name_never_reads_a_file(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "file-reader")
    photo = png_bytes()
    names = ["/etc/passwd", "../../jobs.sqlite3", "file:///etc/passwd", str(limits_server.data_dir / "jobs.sqlite3")]
    workflows = [seed_form(name) for name in names] + [{"1": {"class_type": "LoadImage", "inputs": {"image": "/etc/passwd"}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}]
    jobs = []
    for workflow in workflows:
        response = http.post("/api/jobs", files={"file": ("photo.png", photo, "image/png")}, data={"workflow": json.dumps(workflow)})
        assert response.status_code == 202, response.text
        jobs.append(response.json()["job_id"])
        if len(jobs) % 3 == 0:  # three at a time: the per-user concurrency limit
            for job in jobs[-3:]:
                assert wait_final(http, job)["status"] == "succeeded"
    for job in jobs:
        assert wait_final(http, job)["status"] == "succeeded"
        result = http.get(f"/results/{job}.png")
        assert result.status_code == 200
        assert np.array_equal(pixels_of(result.content), pixels_of(photo)), "the result is not the uploaded photo"


@pytest.mark.parametrize("model", ["/etc/passwd", "../x.pth", "~/.ssh/id_rsa", "ddcolor_paper_tiny/../../x.pth", "C:\\x.pth", "an existing file"])
def test_a_model_field_that_is_a_path_is_refused(limits_server: ServerProcess, limits_root: Path, model: str) -> None:
    if model == "an existing file":  # a real checkpoint-looking file on the server's disk is no exception
        model = str(limits_root / "planted.pth")
        Path(model).write_bytes(b"\x80\x04not really a checkpoint")
    response = post_job(http_client(limits_server, "model-picker"), steps="colorize", model=model)
    assert response.status_code == 400 and response.json()["code"] == "unknown_model", response.text


def test_a_model_inside_a_workflow_that_is_a_path_is_refused(limits_server: ServerProcess) -> None:
    http = http_client(limits_server, "workflow-model-picker")
    for kind, params in [("DDColor", {"model": "/etc/passwd"}), ("DDColor", {"model": "../x.pth"}), ("Upscale", {"model": "../../etc/passwd"}), ("Upscale", {"model": "/etc/passwd"})]:
        body = refused_workflow(http, comfy((kind, params)))
        assert "'n1'" in body["error"], (kind, params, body)
