"""OLDPHOTO_FORWARDED_ALLOW_IPS: by default no peer is trusted with X-Forwarded-For, not even 127.0.0.1 (uvicorn's
own default), so a client on the server's host cannot pick the address the per-address limits count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ServerProcess, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("forwarded"), {"OLDPHOTO_TEST_NODES": "1"})
    yield server
    server.stop()


def sessions(server: ServerProcess, address: str, forwarded: str) -> list[int]:
    http = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)
    return [http.post("/api/session", headers={"X-Forwarded-For": f"{forwarded}.{i}"}).status_code for i in range(31)]


def test_by_default_a_loopback_client_cannot_choose_its_address_with_x_forwarded_for(default_server: ServerProcess) -> None:
    # 31 sessions, each claiming another address: one bucket of 30 a minute, the peer's.
    assert sessions(default_server, "127.0.0.1", "203.0.113") == [200] * 30 + [429]


def test_the_setting_reaches_uvicorn(tmp_path: Path) -> None:
    trusting = start_server(tmp_path, {"OLDPHOTO_TEST_NODES": "1", "OLDPHOTO_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    try:
        # The trusted peer's header is believed: every claimed address has a bucket of its own.
        assert sessions(trusting, "127.0.0.1", "198.51.100") == [200] * 31
    finally:
        trusting.stop()
