"""deploy/nginx.conf in front of a real `oldphoto serve`, through Debian's nginx (issue 14, item 2; docs/deploy.md).

The site file is rendered as an operator would (TLS included, with a throwaway self-signed certificate) and only
its ports, paths and read timeout differ: the read timeout is 3 s instead of 60 s, and the app pings and
heartbeats every second, so "an idle socket outlives the proxy's timeout" takes seconds, not minutes.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.sync.client import connect

from oldphoto.deploy import TEMPLATE, render, site_values
from oldphoto.settings import Settings
from tests.helpers.images import png_bytes
from tests.helpers.proxy import APP_ENV, READ_TIMEOUT_S, SECRET, Proxy, gap_free, nginx_binary, read_socket, read_stream, running_nginx
from tests.helpers.server import start_server
from tests.server.test_telemetry import pause

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx_binary()  # skip (or fail in CI) before starting the app
    app = start_server(tmp_path_factory.mktemp("app"), {**APP_ENV, "OLDPHOTO_WORKERS": "1", "OLDPHOTO_JWT_SECRET": SECRET})
    try:
        with running_nginx(tmp_path_factory.mktemp("nginx"), [f"127.0.0.1:{app.port}"]) as (https_port, http_port):
            yield Proxy(https_port, http_port, app)
    finally:
        app.stop()


def longest_quiet(events: list[tuple[float, dict[str, Any]]]) -> float:
    return max(later - earlier for (earlier, _), (later, _) in zip(events, events[1:]))


# ------------------------------------------------------------------------------------------------ following jobs


def test_a_job_is_followed_through_the_proxy_over_websocket(proxy: Proxy) -> None:
    http = proxy.http("ws-follower")
    job = http.post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(0.3)}).json()
    with proxy.socket("ws-follower", f"?job_id={job['job_id']}") as ws:
        gap_free(read_socket(ws))
    assert http.get(f"/results/{job['job_id']}.png").content.startswith(b"\x89PNG")


def test_a_job_is_followed_through_the_proxy_over_server_sent_events(proxy: Proxy) -> None:
    http = proxy.http("sse-follower")
    job = http.post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(0.3)}).json()
    gap_free(read_stream(http, job["job_id"]))


def queued_behind_a_long_job(proxy: Proxy, user: str) -> str:
    """A job that waits, silent, behind another of 2 x the proxy's read timeout on the one worker."""
    blocker = proxy.http(f"{user}-blocker")
    blocker.post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(2 * READ_TIMEOUT_S)})
    job = proxy.http(user).post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(0.1)})
    return job.json()["job_id"]


def test_an_idle_websocket_outlives_the_proxys_read_timeout_and_gets_the_next_event(proxy: Proxy) -> None:
    job = queued_behind_a_long_job(proxy, "idle-ws")
    with proxy.socket("idle-ws", f"?job_id={job}") as ws:
        events = read_socket(ws)
    gap_free(events)
    assert longest_quiet(events) > READ_TIMEOUT_S + 1, [(round(t, 2), e["type"]) for t, e in events]


def test_an_idle_event_stream_outlives_the_proxys_read_timeout_and_gets_the_next_event(proxy: Proxy) -> None:
    job = queued_behind_a_long_job(proxy, "idle-sse")
    events = read_stream(proxy.http("idle-sse"), job)
    gap_free(events)
    assert longest_quiet(events) > READ_TIMEOUT_S + 1, [(round(t, 2), e["type"]) for t, e in events]


# ------------------------------------------------------------------------------------------------------- uploads


def uncompressed_png(width: int, height: int) -> bytes:
    """A real photo-sized PNG whose size is its pixels (stored, not deflated): 3 bytes a pixel, made at once."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(out, "PNG", compress_level=0)
    return out.getvalue()


def test_a_24_mb_upload_passes_the_proxy(proxy: Proxy) -> None:
    photo = uncompressed_png(2800, 3000)
    assert 24 * 2**20 < len(photo) < 25 * 2**20
    response = proxy.http("big-uploader").post("/api/jobs", files={"file": ("big.png", photo)}, data={"workflow": pause(0)})
    assert response.status_code == 202, response.text


def test_a_26_mb_upload_gets_the_apps_own_413(proxy: Proxy) -> None:
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(26 * 2**20)
    response = proxy.http("bigger-uploader").post("/api/jobs", files={"file": ("big.png", too_big)})
    assert response.status_code == 413 and response.headers["content-type"] == "application/json", response.text
    # The app's words (its limit named), not the proxy's: nginx let the body through to the app.
    assert response.json() == {"error": "The file is larger than the limit of 25 MB.", "code": "too_large"}


def test_a_body_past_the_proxys_cap_is_refused_by_nginx_with_the_same_json(proxy: Proxy) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", proxy.https_port)) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        tls.settimeout(10)
        head, _, body = tls.recv(65536).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"application/json" in head, head
    assert json.loads(body)["code"] == "too_large"


# ------------------------------------------------------------------------------------------ the client's address


def test_per_address_limits_see_the_real_client_through_the_proxy_and_it_cannot_spoof_it(proxy: Proxy) -> None:
    crowd = proxy.http(address="127.0.9.2")
    for i in range(30):  # POST /api/session: 30 a minute per address; a new spoofed address each time
        response = crowd.post("/api/session", headers={"X-Forwarded-For": f"203.0.113.{i}"})
        assert response.status_code == 200, (i, response.text)
        # X-Forwarded-Proto from the trusted proxy: the app knows the client came over TLS.
        assert "secure" in response.headers["set-cookie"].lower()
    refused = crowd.post("/api/session", headers={"X-Forwarded-For": "198.51.100.7, 127.0.0.1"})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", refused.text
    # The app counts the client's own address, not nginx's (127.0.0.1): another client is not refused ...
    assert proxy.http(address="127.0.9.3").post("/api/session").status_code == 200
    # ... a client on a trusted address (here the proxy's own host) cannot hand its choice to the app either ...
    local = proxy.http(address="127.0.0.1")
    statuses = [local.post("/api/session", headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(31)]
    assert statuses == [200] * 30 + [429], statuses
    # ... and a client that skips the proxy is not trusted with the header either.
    direct = httpx.Client(base_url=proxy.app.url, transport=httpx.HTTPTransport(local_address="127.0.9.2"))
    assert direct.post("/api/session", headers={"X-Forwarded-For": "203.0.113.200"}).status_code == 429


# ------------------------------------------------------------------------------------------- the rest of the file


def test_the_page_is_same_origin_through_the_proxy_and_other_names_are_refused(proxy: Proxy) -> None:
    http = proxy.http(address="127.0.9.4")
    # Host and X-Forwarded-Proto reach the app: the page's own https origin passes its Origin check ...
    assert http.post("/api/session", headers={"Origin": proxy.url}).status_code == 200
    refused = http.post("/api/session", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden_origin"
    # ... and only the server's name reaches it at all.
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/api/models", headers={"Host": "evil.example"})


def test_plain_http_is_redirected_to_https(proxy: Proxy) -> None:
    response = httpx.get(f"http://127.0.0.1:{proxy.http_port}/api/models?x=1", headers={"Host": "localhost"})
    assert response.status_code == 301 and response.headers["location"] == "https://localhost/api/models?x=1"


def test_static_files_are_served_by_nginx_and_revalidated(proxy: Proxy) -> None:
    http = proxy.http()
    first = http.get("/static/app.js")
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    assert first.content == (Path(values_static_root()) / "app.js").read_bytes()
    again = http.get("/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def values_static_root() -> str:
    from oldphoto.deploy import STATIC_ROOT

    return str(STATIC_ROOT)


def test_the_renderer_writes_one_upstream_line_per_web_node() -> None:
    values = site_values(Settings(), server_name="x", upstreams=["10.0.0.11:8000", "10.0.0.12:8000"], certificate="c", certificate_key="k")
    site = render(TEMPLATE.read_text(encoding="utf-8"), values)
    assert "server 10.0.0.11:8000 " in site and "server 10.0.0.12:8000 " in site and "{{" not in site
    assert "client_max_body_size 50m;" in site and "proxy_read_timeout 60s;" in site


# --------------------------------------------------------------------------------------- several web nodes (scale-out)


@pytest.mark.scaleout
def test_two_web_nodes_behind_the_proxy_serve_one_users_jobs_over_websocket_and_sse(tmp_path: Path) -> None:
    from tests.distributed.test_worker import worker
    from tests.helpers.services import postgres_database, redis_namespace, scale_out_env

    nginx_binary()
    with postgres_database() as database, redis_namespace() as (broker, prefix), ExitStack() as stack:
        env = {**APP_ENV, **scale_out_env(database, broker, prefix)}  # one store, one broker, one signing key
        web = [start_server(tmp_path / f"web-{i}", env, ready=lambda health: "status" in health) for i in range(2)]
        for node in web:
            stack.callback(node.stop)
        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(database, broker, prefix, tmp_path / "worker"))
        (tmp_path / "nginx").mkdir()
        https_port, http_port = stack.enter_context(running_nginx(tmp_path / "nginx", [f"127.0.0.1:{n.port}" for n in web]))
        proxy = Proxy(https_port, http_port, web[0])
        user = "scale-out-user"
        http = httpx.Client(
            base_url=proxy.url, verify=False, timeout=60,
            headers={"Authorization": f"Bearer {jwt.encode({'sub': user, 'exp': int(time.time()) + 600}, env['OLDPHOTO_JWT_SECRET'])}"},
        )  # fmt: skip
        for i in range(4):
            job = http.post("/api/jobs", files={"file": ("p.png", png_bytes(32, 32))}, data={"workflow": pause(0.2)}).json()["job_id"]
            if i % 2:
                gap_free(read_stream(http, job))
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                bearer = http.headers["Authorization"].removeprefix("Bearer ")
                with connect(f"wss://localhost:{https_port}/ws/progress?job_id={job}", subprotocols=["bearer", bearer], ssl=context) as ws:
                    gap_free(read_socket(ws))
            assert http.get(f"/results/{job}.png").content.startswith(b"\x89PNG")
        answered = {line.split()[0] for line in (tmp_path / "nginx" / "upstream.log").read_text().splitlines()}
        assert answered == {f"127.0.0.1:{n.port}" for n in web}, answered


def test_the_renderer_refuses_a_missing_or_an_unused_value() -> None:
    with pytest.raises(KeyError, match="HTTP_PORT"):
        render("listen {{HTTP_PORT}};", {})
    with pytest.raises(KeyError, match="EXTRA"):
        render("listen {{HTTP_PORT}};", {"HTTP_PORT": "80", "EXTRA": "x"})
    assert render("listen {{HTTP_PORT}};", {"HTTP_PORT": "80"}) == "listen 80;"
