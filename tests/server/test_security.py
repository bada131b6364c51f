"""An authorization matrix against a real server in `required` mode: every case is denied."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers.server import ServerProcess, start_server
from tests.server.conftest import png_bytes, read_until_final

SECRET = "test-secret-with-enough-length-for-hs256-0123456789"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("secured")
    public = folder / "jwt-public.pem"
    public.write_bytes(rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {
        "OLDPHOTO_AUTH": "required",
        "OLDPHOTO_JWT_SECRET": SECRET,
        "OLDPHOTO_JWT_PUBLIC_KEY_FILE": str(public),
        "OLDPHOTO_ALLOWED_ORIGINS": "https://photos.example.org",
    }
    server = start_server(folder / "data", env)
    yield server
    server.stop()


def token(user: str = "alice", ttl: int = 600, key: str = SECRET, algorithm: str = "HS256", **extra: object) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl, **extra}, key, algorithm=algorithm)


def unsigned(user: str = "alice") -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': user, 'exp': int(time.time()) + 600})}."


def client(server: ServerProcess, bearer: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def submit(server: ServerProcess, bearer: str) -> str:
    response = client(server, bearer).post("/api/jobs", files={"file": ("p.png", png_bytes(48, 48))}, data={"steps": "sharpen"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def bad_tokens(rsa_key: rsa.RSAPrivateKey) -> dict[str, str | None]:
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "no token": None,
        "expired": token(ttl=-60),
        "bad signature": token(key="another-secret-another-secret-another-secret"),
        "alg none": unsigned(),
        "HS256 signed with the RS256 public key": _hs256_with(public_pem),
        "no sub": jwt.encode({"exp": int(time.time()) + 600}, SECRET, algorithm="HS256"),
        "no exp": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        "garbage": "not-a-token",
    }


def _hs256_with(key: bytes) -> str:
    # PyJWT itself refuses to sign HS256 with a PEM key, which is the attack: build the token by hand.
    import hashlib
    import hmac

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    head_body = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': 'alice', 'exp': int(time.time()) + 600})}"
    signature = base64.urlsafe_b64encode(hmac.new(key, head_body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"{head_body}.{signature}"


def test_good_tokens_of_both_algorithms_work(secured: ServerProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    rs = token("bob", key=rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), algorithm="RS256")
    for bearer in (token("alice"), rs):
        assert client(secured, bearer).get("/api/jobs").status_code == 200


def test_every_bad_token_is_refused_on_rest_sse_and_websocket(secured: ServerProcess, rsa_key: rsa.RSAPrivateKey) -> None:
    job = submit(secured, token("alice"))
    for name, bearer in bad_tokens(rsa_key).items():
        http = client(secured, bearer)
        for method, path in [("GET", "/api/jobs"), ("GET", f"/api/jobs/{job}"), ("DELETE", f"/api/jobs/{job}"), ("GET", f"/results/{job}.png"), ("GET", f"/api/jobs/{job}/events")]:
            response = http.request(method, path)
            assert response.status_code == 401, (name, method, path, response.status_code)
            assert response.json()["code"] in ("unauthorized", "token_expired")
        protocols = ["bearer", bearer] if bearer else None
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{secured.ws_url}/ws/progress?job_id={job}", subprotocols=protocols, open_timeout=5)
        assert refused.value.response.status_code == 403, name


def test_sessions_are_off_in_required_mode(secured: ServerProcess) -> None:
    assert httpx.post(f"{secured.url}/api/session").status_code >= 400


def test_another_users_job_is_not_found_everywhere(secured: ServerProcess) -> None:
    job = submit(secured, token("alice"))
    with connect(f"{secured.ws_url}/ws/progress?job_id={job}", subprotocols=["bearer", token("alice")]) as ws:
        assert read_until_final(ws, 60)[-1]["type"] == "complete"
    mallory = client(secured, token("mallory"))
    for method, path in [("GET", f"/api/jobs/{job}"), ("DELETE", f"/api/jobs/{job}"), ("GET", f"/results/{job}.png"), ("GET", f"/api/jobs/{job}/events")]:
        response = mallory.request(method, path)
        assert response.status_code == 404 and response.json()["code"] == "not_found", (method, path)
    assert job not in [j["job_id"] for j in mallory.get("/api/jobs").json()]
    with connect(f"{secured.ws_url}/ws/progress?job_id={job}", subprotocols=["bearer", token("mallory")]) as ws:
        answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "error" and answer["code"] == "not_found"
        ws.send(json.dumps({"type": "cancel", "job_id": job}))
        assert json.loads(ws.recv(timeout=10))["code"] == "not_found"


def test_foreign_origins_are_refused_and_listed_ones_allowed(secured: ServerProcess) -> None:
    alice = token("alice")
    evil = client(secured, alice).post("/api/jobs", files={"file": ("p.png", png_bytes())}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["code"] == "forbidden_origin"
    with pytest.raises(InvalidStatus):
        connect(f"{secured.ws_url}/ws/progress", subprotocols=["bearer", alice], origin="https://evil.example", open_timeout=5)
    with connect(f"{secured.ws_url}/ws/progress", subprotocols=["bearer", alice], origin="https://photos.example.org") as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    listed = client(secured, alice).post("/api/jobs", files={"file": ("p.png", png_bytes())}, data={"steps": "sharpen"}, headers={"Origin": "https://photos.example.org"})
    assert listed.status_code == 202
    assert listed.headers.get("access-control-allow-origin") == "https://photos.example.org"


def test_the_server_answers_bearer_and_never_echoes_the_token(secured: ServerProcess) -> None:
    alice = token("alice")
    with connect(f"{secured.ws_url}/ws/progress", subprotocols=["bearer", alice]) as ws:
        assert ws.subprotocol == "bearer"
        assert alice not in str(ws.response.headers)


def test_a_token_in_the_query_never_reaches_the_logs(secured: ServerProcess) -> None:
    alice = token("alice", purpose="query-test")
    with connect(f"{secured.ws_url}/ws/progress?token={alice}") as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    httpx.get(f"{secured.url}/api/jobs?token={alice}")
    time.sleep(0.3)
    assert alice not in secured.log()
    assert "token=[redacted]" in secured.log()


def test_a_websocket_closes_when_its_token_expires(secured: ServerProcess) -> None:
    with connect(f"{secured.ws_url}/ws/progress", subprotocols=["bearer", token("alice", ttl=2)]) as ws:
        with pytest.raises(Exception):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 4001


def test_anonymous_sessions_set_a_safe_cookie(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/api/session")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    jar = httpx.Client(base_url=server.url, cookies=response.cookies)
    assert jar.get("/api/jobs").status_code == 200
