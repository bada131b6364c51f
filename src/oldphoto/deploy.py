"""Rendering deploy/nginx.conf: its placeholders (upper-case names in double braces) filled, and nothing else changed (docs/deploy.md).

`python -m oldphoto.deploy --server-name photos.example.org --upstream 10.0.0.11:8000 --upstream 10.0.0.12:8000
--cert CERT --key KEY [--template deploy/nginx.conf]` prints the site file; the tests render the same file.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from oldphoto.settings import Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"  # in a source checkout
STATIC_ROOT = Path(__file__).resolve().parent / "server" / "static"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def body_cap_mb(settings: Settings) -> int:
    """nginx's client_max_body_size: twice the app's file cap, so the app answers every body it could judge."""
    return math.ceil(2 * settings.max_upload_mb)


def proxy_read_timeout_s(settings: Settings) -> int:
    """Longer than three of the app's pings and heartbeats: one late or lost keep-alive never closes a socket."""
    return max(60, math.ceil(3 * max(settings.ws_ping_interval_s, settings.sse_heartbeat_s)))


def render(template: str, values: dict[str, str]) -> str:
    """Every placeholder filled; a missing or an unused value is a mistake, not a silent default."""
    used = set(_PLACEHOLDER.findall(template))
    if missing := used - values.keys():
        raise KeyError(f"no value for {sorted(missing)}")
    if unused := values.keys() - used:
        raise KeyError(f"the template has no {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def site_values(
    settings: Settings,
    *,
    server_name: str,
    upstreams: list[str],
    certificate: str,
    certificate_key: str,
    http_port: int = 80,
    https_port: int = 443,
    read_timeout_s: int | None = None,
    static_root: Path = STATIC_ROOT,
) -> dict[str, str]:
    return {
        "SERVER_NAME": server_name,
        "HTTP_PORT": str(http_port),
        "HTTPS_PORT": str(https_port),
        "TLS_CERTIFICATE": certificate,
        "TLS_CERTIFICATE_KEY": certificate_key,
        "UPSTREAM_SERVERS": "\n".join(f"    server {u} max_fails=3 fail_timeout=10s;" for u in upstreams),
        "CLIENT_MAX_BODY_SIZE": f"{body_cap_mb(settings)}m",
        "PROXY_READ_TIMEOUT": f"{read_timeout_s or proxy_read_timeout_s(settings)}s",
        "STATIC_ROOT": str(static_root),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oldphoto.deploy", description="Print deploy/nginx.conf, rendered.")
    parser.add_argument("--server-name", required=True)
    parser.add_argument("--upstream", action="append", required=True, help="a web node, host:port (repeat)")
    parser.add_argument("--cert", required=True, help="the TLS certificate (chain) file")
    parser.add_argument("--key", required=True, help="its private key file")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)
    values = site_values(Settings(), server_name=args.server_name, upstreams=args.upstream, certificate=args.cert, certificate_key=args.key)
    print(render(args.template.read_text(encoding="utf-8"), values), end="")


if __name__ == "__main__":
    main()
