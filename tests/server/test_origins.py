"""The Origin allowlist in-process (tests/server/test_security.py checks it through a real server)."""

from __future__ import annotations

from starlette.datastructures import URL

from oldphoto.server.origins import origin_allowed, own_origin
from oldphoto.settings import Settings


def test_a_websocket_urls_own_origin_is_its_http_one() -> None:
    assert own_origin(URL("ws://photos.example:8000/ws/progress")) == "http://photos.example:8000"
    assert own_origin(URL("wss://photos.example/ws/progress")) == "https://photos.example"
    assert own_origin(URL("https://photos.example/api/jobs")) == "https://photos.example"


def test_own_and_listed_origins_pass_and_every_other_is_refused() -> None:
    settings = Settings(allowed_origins=" https://app.example/ , http://localhost:3000")
    url = URL("wss://photos.example/ws/progress")
    assert origin_allowed(None, url, settings)  # no browser, no Origin: the token decides
    assert origin_allowed("https://photos.example", url, settings)
    assert origin_allowed("https://photos.example/", url, settings)
    assert origin_allowed("https://app.example", url, settings)
    assert origin_allowed("http://localhost:3000/", url, settings)
    for foreign in ["http://photos.example", "https://evil.example", "https://photos.example.evil", "https://app.exampleX", "null", ""]:
        assert not origin_allowed(foreign, url, settings), foreign
    assert not origin_allowed("https://app.example", url, Settings())
