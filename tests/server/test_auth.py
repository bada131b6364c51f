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


def test_without_a_configured_secret_one_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = Authenticator(Settings(data_dir=tmp_path / "data"))
    kept = tmp_path / "data" / "jwt-secret"
    assert first.mode == "anonymous" and kept.read_text() == first.secret and len(first.secret) >= 48
    assert kept.stat().st_mode & 0o777 == 0o600 and not (tmp_path / "data" / "jwt-secret.tmp").exists()
    again = Authenticator(Settings(data_dir=tmp_path / "data"))  # a restart: sessions stay valid
    assert again.secret == first.secret and again.verify(first.issue("ada")).user == "ada"
    assert Authenticator(Settings(data_dir=tmp_path)).secret == (tmp_path / "jwt-secret").read_text()  # the folder exists
    assert Authenticator(Settings(data_dir=tmp_path / "a" / "b")).secret  # nor its parent


def test_an_anonymous_session_token_carries_a_fresh_user_and_its_lifetime(tmp_path: Path) -> None:
    auth = authenticator(tmp_path)
    claims = jwt.decode(auth.issue(ttl_s=100), SECRET, algorithms=["HS256"])
    assert claims["sub"].startswith("anon-") and claims["exp"] - claims["iat"] == 100
    assert abs(claims["iat"] - time.time()) < 5 and jwt.decode(auth.issue(), SECRET, algorithms=["HS256"])["sub"] != claims["sub"]
    identity = auth.verify(auth.issue("ada", ttl_s=100))
    assert identity.user == "ada" and identity.expires_at == pytest.approx(time.time() + 100, abs=5)


def test_a_long_user_name_is_cut_to_128_characters(tmp_path: Path) -> None:
    assert authenticator(tmp_path).verify(token(sub="u" * 500)).user == "u" * 128


def test_tokens_signed_with_the_operators_rsa_key_are_accepted_with_it_only(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    signed = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    assert authenticator(tmp_path, jwt_public_key_file=public).verify(signed).user == "ada"
    with pytest.raises(Unauthorized, match="signing algorithm is not accepted"):
        authenticator(tmp_path).verify(signed)  # no public key configured: RS256 is no way in


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 5}, "Your session has expired; start a new one."),
        ({"sub": None}, "The access token is not valid."),
        ({"sub": ""}, "The access token names no user."),
        ({"sub": 7}, "The access token is not valid."),
        ({"exp": 10**400}, "The access token is not valid."),  # past a float's range: no real expiry
    ],
)
def test_each_refusal_says_why(tmp_path: Path, claims: dict[str, Any], message: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        authenticator(tmp_path).verify(token(**claims))
    assert str(refused.value) == message


def test_an_algorithm_we_do_not_take_is_named_as_such(tmp_path: Path) -> None:
    for alg in ["none", "HS512", ["HS256"]]:
        _, body, signature = token().split(".")
        forged = jwt.utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).decode()
        with pytest.raises(Unauthorized) as refused:
            authenticator(tmp_path).verify(f"{forged}.{body}.{signature}")
        assert str(refused.value) == "This token's signing algorithm is not accepted.", alg


def test_the_first_token_present_is_the_one_checked_and_none_at_all_is_refused(tmp_path: Path) -> None:
    auth = authenticator(tmp_path)
    assert auth.from_sources(None, "", token(sub="ada"), token(sub="bea")).user == "ada"
    with pytest.raises(Unauthorized):
        auth.from_sources("not-a-token", token())  # a present but bad token is not skipped
    with pytest.raises(Unauthorized, match="^Sign in first"):
        auth.from_sources(None, "", None)


def test_a_bearer_header_gives_its_token_and_nothing_else_does() -> None:
    from oldphoto.server.auth import bearer

    assert bearer("Bearer abc") == "abc" and bearer("bEARER  abc ") == "abc"
    for other in [None, "", "Bearer ", "Bearer    ", "Basic abc", "Bearerabc", "abc"]:
        assert bearer(other) is None, other
