"""The Origin allowlist: the server's own origin plus `OLDPHOTO_ALLOWED_ORIGINS`.

Browsers always send Origin on WebSocket handshakes and cross-site writes; clients outside a browser may send
none and are then judged by their token alone.
"""

from __future__ import annotations

from starlette.datastructures import URL

from oldphoto.settings import Settings


def own_origin(url: URL) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return f"{scheme}://{url.netloc}"


def origin_allowed(origin: str | None, url: URL, settings: Settings) -> bool:
    if origin is None:
        return True
    origin = origin.rstrip("/")
    return origin == own_origin(url) or origin in settings.origins
