"""Keep tokens out of every log line (a `?token=` in a WebSocket URL would otherwise land in the access log).

The server reads its query with percent-decoding, so `?%74oken=<jwt>` is a token to it: a name is judged after
decoding, as the server judges it, never by its raw spelling. Anything shaped like a JWT is hidden too, wherever it
is in the line (a token may also arrive percent-encoded in the value, which the name rule already covers).

Installed as a log record factory, so it covers every logger of the process (uvicorn's and ours, and children such
as `oldphoto.server.app`, which a filter on the `oldphoto` logger does not see), whatever handler prints them.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
TOKEN_NAMES = frozenset({"token", "access_token"})
# A query parameter: after `?`, `&` or `;`, a name, `=`, and a value up to the next separator or the line's quoting.
QUERY_PARAM = re.compile(r"(?<=[?&;])([^=&;\s\"'#]+)=([^&;\s\"'#]*)")
# `token=` spelled plainly anywhere in a line, query or not (the rule before names were decoded).
PLAIN = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
# header.payload.signature, base64url, header starting `{"` (eyJ): a JWT wherever it appears.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _param(match: re.Match[str]) -> str:
    name = match.group(1)
    if unquote_plus(name).strip().lower() in TOKEN_NAMES:
        return f"{name}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    return JWT.sub(REDACTED, PLAIN.sub(rf"\1{REDACTED}", QUERY_PARAM.sub(_param, text)))


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redacted(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redacted(v) for k, v in record.args.items()}


class RedactTokens(logging.Filter):
    """The same redaction as a filter, for handlers set up outside `install` (tests, embedding)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install() -> None:
    """Every log record created in this process from now on is redacted before any handler sees it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_tokens", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    factory.redacts_tokens = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
