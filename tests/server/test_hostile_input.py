"""No 500 from client input (issue 11, item 5), against a real `oldphoto serve` process.

Malformed tokens, workflows, Last-Event-ID and after_seq values (on SSE, in a WebSocket URL and in a `subscribe`
message) each get a 4xx with the SPEC error shape (or, on an open WebSocket, an `error` event, or a refused
handshake), and the server's log shows no traceback. First the known cases of the hostile corpus
(tests/helpers/hostile.py, `hostile_requests`), each with the exact answer it must get; then hypothesis throws
generated ones. Every test speaks from its own loopback addresses and as fresh users, so rate limits never answer
in place of the parser.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.helpers.hostile import NOTHING_LEFT, RequestCase, hostile_requests
from tests.helpers.server import ServerProcess, start_server
from tests.server.test_limits import png_bytes, seed_jobs

SECRET = "hostile-input-secret-0123456789-0123456789-abcdef"
OWNER = "resumer"  # owns one finished (cancelled) job: events 1 and 2
MAX_SEQ = 2**63 - 1
LOG_MARKERS = ("Traceback", "unhandled error", "Exception in ASGI application")
TOKEN_CHARS = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # an HTTP token: what fits in Sec-WebSocket-Protocol as it is
# The log check is a function-scoped fixture on purpose: one look at the log per test, after all its examples.
FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
_addresses = itertools.count()
_users = itertools.count()


def token(user: str, ttl: int = 600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, SECRET, algorithm="HS256")


def fresh_client(server: ServerProcess, bearer: str | bytes | None = None) -> httpx.Client:
    """A client from a loopback address of its own (its own rate-limit buckets)."""
    n = next(_addresses)
    headers = {"Authorization": b"Bearer " + (bearer if isinstance(bearer, bytes) else bearer.encode())} if bearer else {}
    transport = httpx.HTTPTransport(local_address=f"127.0.{100 + n // 250}.{2 + n % 250}")
    return httpx.Client(base_url=server.url, headers=headers, transport=transport, timeout=30)


def fresh_user() -> str:
    return f"fuzz-{next(_users)}"


def client_error(response: httpx.Response, code: str | None = None) -> dict[str, Any]:
    """A 4xx in the SPEC error shape (and with `code`, when given)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), body
    if code is not None:
        assert body["code"] == code, body
    return body


def not_a_server_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        client_error(response)


def valid_seq(value: str) -> bool:
    return re.fullmatch(r"[0-9]{1,19}", value) is not None and int(value) <= MAX_SEQ


def header_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


# --------------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-input")


@pytest.fixture(scope="module")
def finished_job(root: Path) -> str:
    (root / "data").mkdir()
    return seed_jobs(root / "data", OWNER, 1)[0]


@pytest.fixture(scope="module")
def hostile_server(root: Path, finished_job: str) -> Iterator[ServerProcess]:
    # Offline: a fuzzed workflow that happens to be valid is cancelled at once and must not try to download a model.
    # The tests' address trusted as a proxy: a fuzzed X-Forwarded-For is read, and becomes the client's address.
    env = {
        "OLDPHOTO_JWT_SECRET": SECRET,
        "OLDPHOTO_MODELS_DIR": str(root / "models"),
        "HF_HUB_OFFLINE": "1",
        "OLDPHOTO_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    server = start_server(root / "data", env)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_traceback_in_the_log(hostile_server: ServerProcess) -> Iterator[None]:
    """What each test sent left no traceback and no unhandled error in the server's log."""
    start = len(hostile_server.log())
    yield
    time.sleep(0.2)
    logged = hostile_server.log()[start:]
    for marker in LOG_MARKERS:
        assert marker not in logged, logged[-4000:]


# ------------------------------------------------------------------------------------ the probes


def probe_token(server: ServerProcess, job: str, bearer: str | bytes) -> None:
    """Refused everywhere a token is read; never a 500 or a handshake that fails on the server's side."""
    http = fresh_client(server, bearer)
    for path in ("/api/jobs", f"/api/jobs/{job}/events"):
        response = http.get(path)
        assert response.status_code == 401 or response.status_code < 400, (path, response.status_code, response.text[:200])
        not_a_server_error(response)
    http.close()
    text = bearer.decode("latin-1") if isinstance(bearer, bytes) else bearer
    jar = fresh_client(server)
    not_a_server_error(jar.get("/api/jobs", headers={"Cookie": b"oldphoto_session=" + header_bytes(bearer)}))
    jar.close()
    urls = [f"{server.ws_url}/ws/progress?token={urllib.parse.quote(text, safe='')}"]
    protocols: list[list[str] | None] = [None]
    if TOKEN_CHARS.fullmatch(text):
        urls.append(f"{server.ws_url}/ws/progress")
        protocols.append(["bearer", text])
    for url, offered in zip(urls, protocols):
        try:
            with connect(url, subprotocols=offered, open_timeout=10) as ws:  # type: ignore[arg-type]
                ws.send(json.dumps({"type": "ping"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        except InvalidStatus as refused:
            assert refused.response.status_code == 403, refused


def probe_workflow(server: ServerProcess, workflow: str) -> httpx.Response:
    http = fresh_client(server, token(fresh_user()))
    response = http.post("/api/jobs", files={"file": ("p.png", png_bytes(16, 12))}, data={"workflow": workflow})
    if response.status_code == 202:  # a valid one: nothing here is for running
        http.delete(f"/api/jobs/{response.json()['job_id']}")
    else:
        client_error(response)
    http.close()
    return response


def probe_resume_over_sse(server: ServerProcess, job: str, value: str | bytes, where: str) -> httpx.Response:
    http = fresh_client(server, token(OWNER))
    if where == "header":
        request = http.build_request("GET", f"/api/jobs/{job}/events", headers={"Last-Event-ID": header_bytes(value)})
    else:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        request = http.build_request("GET", f"/api/jobs/{job}/events?after_seq={urllib.parse.quote(text, safe='')}")
    response = http.send(request, stream=True)
    try:
        if response.status_code == 200:  # a finished job: the replay ends by itself
            body = b"".join(response.iter_bytes())
            assert body.startswith(b"retry:"), body[:200]
        else:
            response.read()
            not_a_server_error(response)
    finally:
        response.close()
        http.close()
    return response


def first_answer(ws: ClientConnection) -> dict[str, Any]:
    """The first thing the socket says, or a pong when it had nothing to say (asked after a silence)."""
    ws.send(json.dumps({"type": "ping"}))
    return json.loads(ws.recv(timeout=10))


def probe_resume_over_websocket(server: ServerProcess, job: str, value: str) -> dict[str, Any]:
    url = f"{server.ws_url}/ws/progress?job_id={job}&after_seq={urllib.parse.quote(value, safe='')}"
    with connect(url, subprotocols=["bearer", token(OWNER)], open_timeout=10) as ws:
        answer = first_answer(ws)
        assert answer["type"] != "error" or answer["code"] == "bad_message", answer
        return answer


def probe_message(server: ServerProcess, text: str) -> dict[str, Any]:
    """A message on a fresh socket, then a ping: the error it got (else its first answer, else the pong).

    An error is sent before the next message is read, so it comes before the pong; a valid subscription's replay
    may come either side of it. The socket must still be open to answer the ping.
    """
    answers = []
    with connect(f"{server.ws_url}/ws/progress", subprotocols=["bearer", token(OWNER)], open_timeout=10) as ws:
        ws.send(text)
        ws.send(json.dumps({"type": "ping"}))
        try:
            while (answer := json.loads(ws.recv(timeout=10)))["type"] != "pong":
                answers.append(answer)
        except ConnectionClosed as closed:
            raise AssertionError(f"the socket closed after {text[:80]!r}: {closed}") from None
    errors = [a for a in answers if a["type"] == "error"]
    return (errors or answers or [{"type": "pong"}])[0]


# ---------------------------------------------------------------------------------- the known cases


@pytest.mark.parametrize("case", hostile_requests("token"), ids=lambda c: c.name)
def test_each_hostile_token_is_refused_with_401_or_403(hostile_server: ServerProcess, finished_job: str, case: RequestCase) -> None:
    http = fresh_client(hostile_server, header_bytes(case.value))
    for path in ("/api/jobs", f"/api/jobs/{finished_job}/events"):
        client_error(http.get(path), case.expect)
    text = case.value.decode("latin-1") if isinstance(case.value, bytes) else case.value
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{hostile_server.ws_url}/ws/progress?token={urllib.parse.quote(text, safe='')}", open_timeout=10)
    assert refused.value.response.status_code == 403
    if TOKEN_CHARS.fullmatch(text):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{hostile_server.ws_url}/ws/progress", subprotocols=["bearer", text], open_timeout=10)  # type: ignore[list-item]
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize("case", hostile_requests("workflow"), ids=lambda c: c.name)
def test_each_hostile_workflow_is_a_400(hostile_server: ServerProcess, case: RequestCase) -> None:
    assert isinstance(case.value, str)
    response = probe_workflow(hostile_server, case.value)
    assert response.status_code == 400
    client_error(response, case.expect)
    assert len(response.json()["error"]) < 400, "the message repeats the bad value at length"


@pytest.mark.parametrize("case", hostile_requests("resume"), ids=lambda c: c.name)
def test_each_hostile_resume_point_is_refused(hostile_server: ServerProcess, finished_job: str, case: RequestCase) -> None:
    for where in ("header", "query"):
        response = probe_resume_over_sse(hostile_server, finished_job, case.value, where)
        if case.expect == NOTHING_LEFT:
            assert response.status_code == 204, (where, response.status_code)
        else:
            assert response.status_code == 400, (where, response.status_code)
            assert response.json()["code"] == case.expect
    text = case.value.decode("utf-8", "replace") if isinstance(case.value, bytes) else case.value
    answer = probe_resume_over_websocket(hostile_server, finished_job, text)
    if case.expect == NOTHING_LEFT:
        assert answer["type"] == "pong", answer  # nothing to replay past the end, and nothing wrong
    else:
        assert answer["type"] == "error" and answer["code"] == "bad_message", answer


@pytest.mark.parametrize("case", hostile_requests("ws_message"), ids=lambda c: c.name)
def test_each_hostile_websocket_message_gets_an_error_event(hostile_server: ServerProcess, finished_job: str, case: RequestCase) -> None:
    assert isinstance(case.value, str)
    answer = probe_message(hostile_server, case.value.replace("JOB", finished_job))
    assert answer["type"] == "error" and answer["code"] == case.expect, answer


def test_a_signed_token_with_an_expiry_past_a_float_is_refused(hostile_server: ServerProcess) -> None:
    # Signed with the server's key (say, by a broken issuer): PyJWT accepts exp 10**400, float() of it overflowed.
    bearer = jwt.api_jws.encode(json.dumps({"sub": "alice", "exp": 10**400}).encode(), SECRET, algorithm="HS256")
    client_error(fresh_client(hostile_server, bearer).get("/api/jobs"), "unauthorized")


def test_a_job_id_that_cannot_be_one_is_not_found_before_any_store_sees_it(hostile_server: ServerProcess) -> None:
    # PostgreSQL answers a NUL in text with an error, not an empty result: such ids stop at the door, as 404.
    http = fresh_client(hostile_server, token(OWNER))
    for job in ("%00", "a%00b", "x" * 65, "%C2%B2", "a.b"):
        for method, path in (("GET", f"/api/jobs/{job}"), ("DELETE", f"/api/jobs/{job}"), ("GET", f"/api/jobs/{job}/events"), ("GET", f"/results/{job}.png")):
            client_error(http.request(method, path), "not_found")


# ---------------------------------------------------------------------------------- generated cases

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
header_safe = st.binary(min_size=1, max_size=60).map(lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F)).filter(bool)


def _part(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


tokens = st.one_of(
    header_safe,
    st.tuples(json_values, json_values, st.text(alphabet="abcXYZ019-_=.", max_size=10)).map(lambda t: f"{_part(t[0])}.{_part(t[1])}.{t[2]}"),
    st.fixed_dictionaries({"alg": json_values, "typ": json_values}).map(lambda h: f"{_part(h)}.{_part({'sub': 'x', 'exp': 9999999999})}.c2ln"),
    # Signed with the server's own key, so the claims are read: odd types and values in them.
    # (Through the JWS layer: PyJWT's own encode would refuse some of these claims before they are sent.)
    st.fixed_dictionaries({"sub": json_values, "exp": json_values | st.integers(10**300, 10**4000) | st.floats()}).map(
        lambda claims: jwt.api_jws.encode(json.dumps(claims).encode(), SECRET, algorithm="HS256")
    ),
)

node_types = st.sampled_from(["LoadImage", "DDColor", "Denoise", "Upscale", "Sharpen", "SaveImage"]) | st.text(max_size=6)
input_names = st.sampled_from(["image", "images", "strength", "input_size", "model", "scale", "tile", "amount"]) | st.text(max_size=6)
references = st.sampled_from(["load.image", "load.output", "load.0", "load.\u00b2", "x.9", "nowhere.image", "load"]) | json_values
seed_nodes = st.fixed_dictionaries(
    {"id": st.sampled_from(["load", "x", "save", 1]) | json_values, "type": node_types},
    optional={"inputs": st.dictionaries(input_names, references, max_size=3) | json_values, "params": json_values, "widgets_values": json_values},
)
comfy_nodes = st.fixed_dictionaries(
    {"class_type": node_types},
    optional={"inputs": st.dictionaries(input_names, json_values | st.tuples(st.sampled_from(["1", "2"]), json_values).map(list), max_size=3) | json_values},
)
workflows = st.one_of(
    st.fixed_dictionaries({"nodes": st.lists(seed_nodes, max_size=4)}, optional={"links": json_values}).map(json.dumps),
    st.dictionaries(st.sampled_from(["1", "2", "3"]), comfy_nodes, max_size=3).map(json.dumps),
    st.fixed_dictionaries({"steps": json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.tuples(st.sampled_from("[{"), st.integers(17, 3000)).map(lambda t: t[0] * t[1] if t[0] == "[" else '{"a":' * t[1]),
)
resume_values = st.one_of(
    st.integers().map(str),
    st.integers(min_value=2**62, max_value=2**66).map(str),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.text(max_size=8),
)


@FUZZ
@given(bearer=tokens)
def test_generated_tokens_never_cause_a_server_error(hostile_server: ServerProcess, finished_job: str, bearer: str | bytes) -> None:
    probe_token(hostile_server, finished_job, bearer)


@FUZZ
@given(workflow=workflows)
def test_generated_workflows_never_cause_a_server_error(hostile_server: ServerProcess, workflow: str) -> None:
    probe_workflow(hostile_server, workflow)


@FUZZ
@given(value=resume_values)
def test_generated_resume_points_are_read_or_refused_never_a_server_error(hostile_server: ServerProcess, finished_job: str, value: str) -> None:
    # h11 (the client) sends no header value with surrounding spaces, and servers strip them anyway.
    if value.strip() == value and value.isprintable():
        try:
            encoded = value.encode("latin-1")
        except UnicodeEncodeError:
            encoded = value.encode()
        response = probe_resume_over_sse(hostile_server, finished_job, encoded, "header")
        assert response.status_code in ((200, 204) if valid_seq(value) or value == "" else (400,)), (value, response.status_code)
    response = probe_resume_over_sse(hostile_server, finished_job, value, "query")
    assert response.status_code in ((200, 204) if valid_seq(value) or value == "" else (400,)), (value, response.status_code)
    answer = probe_resume_over_websocket(hostile_server, finished_job, value)
    assert (answer["type"] == "error") == (not valid_seq(value) and value != ""), (value, answer)


@FUZZ
@given(after_seq=json_values | st.integers(min_value=2**62, max_value=2**70), job=st.sampled_from(["JOB", "", "\u0000", "x" * 65]) | st.text(max_size=8))
def test_generated_subscriptions_are_answered_never_a_server_error(hostile_server: ServerProcess, finished_job: str, after_seq: Any, job: str) -> None:
    message = json.dumps({"type": "subscribe", "job_id": job.replace("JOB", finished_job), "after_seq": after_seq})
    if len(message.encode()) <= 4096:
        probe_message(hostile_server, message)


@FUZZ
@given(
    headers=st.dictionaries(st.sampled_from(["Host", "Origin", "Accept-Language", "Cookie", "X-Forwarded-For", "Authorization"]), header_safe, max_size=4),
    lang=st.text(max_size=10),
)
def test_generated_headers_and_query_never_cause_a_server_error(hostile_server: ServerProcess, finished_job: str, headers: dict[str, bytes], lang: str) -> None:
    http = fresh_client(hostile_server, token(OWNER))
    # DELETE: a state-changing method, so the Origin check runs too (on the Host the request names).
    for method, path in (("DELETE", f"/api/jobs/{finished_job}"), ("GET", f"/api/jobs?lang={urllib.parse.quote(lang, safe='')}")):
        not_a_server_error(http.request(method, path, headers=headers))
    http.close()
