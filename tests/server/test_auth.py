"""Token checks of the Authenticator itself: audience and issuer when configured, and the claims every token needs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from oldphoto.server.auth import Authenticator, Unauthorized
from oldphoto.settings import Settings

SECRET = "a-test-secret-of-at-least-32-bytes-length"
AUDIENCE = "oldphoto-api"
ISSUER = "https://id.example.org/"


def authenticator(tmp_path: Path, **settings: Any) -> Authenticator:
    return Authenticator(Settings(data_dir=tmp_path, auth="required", jwt_secret=SECRET, **settings))


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "ada", "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"aud": AUDIENCE, "iss": ISSUER}, True),
        ({"aud": [AUDIENCE, "another-api"], "iss": ISSUER}, True),
        ({"aud": "another-api", "iss": ISSUER}, False),
        ({"iss": ISSUER}, False),  # no audience at all
        ({"aud": AUDIENCE, "iss": "https://evil.example.org/"}, False),
        ({"aud": AUDIENCE}, False),  # no issuer at all
    ],
)
def test_with_audience_and_issuer_configured_both_must_match(tmp_path: Path, claims: dict[str, Any], accepted: bool) -> None:
    auth = authenticator(tmp_path, jwt_audience=AUDIENCE, jwt_issuer=ISSUER)
    if accepted:
        assert auth.verify(token(**claims)).user == "ada"
    else:
        with pytest.raises(Unauthorized):
            auth.verify(token(**claims))


def test_without_them_configured_a_token_with_any_audience_is_accepted(tmp_path: Path) -> None:
    auth = authenticator(tmp_path)
    assert auth.verify(token(aud="whatever", iss="anyone")).user == "ada"


def test_the_servers_own_sessions_carry_the_configured_audience_and_issuer(tmp_path: Path) -> None:
    auth = authenticator(tmp_path, jwt_audience=AUDIENCE, jwt_issuer=ISSUER)
    claims = jwt.decode(auth.issue("bea"), SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "bea" and auth.verify(auth.issue("bea")).user == "bea"


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": None}, "unauthorized"),  # a token that never expires is refused
        ({"sub": None}, "unauthorized"),
        ({"sub": ""}, "unauthorized"),
        ({"exp": int(time.time()) - 5}, "token_expired"),
        ({"nbf": int(time.time()) + 3600}, "unauthorized"),  # not valid yet
    ],
)
def test_every_token_needs_a_user_and_a_future_expiry(tmp_path: Path, claims: dict[str, Any], code: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        authenticator(tmp_path).verify(token(**claims))
    assert refused.value.code == code


@pytest.mark.parametrize("alg", [["HS256"], {"HS256": 1}, 256, None])
def test_an_algorithm_header_that_is_not_a_string_is_refused(tmp_path: Path, alg: object) -> None:
    # The header is the sender's: a list or an object there once escaped as a TypeError (a 500, not a 401).
    _, body, signature = token().split(".")
    forged = jwt.utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).decode()
    with pytest.raises(Unauthorized):
        authenticator(tmp_path).verify(f"{forged}.{body}.{signature}")
