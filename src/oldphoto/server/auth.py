"""Identities: HS256 session tokens for anonymous users, or tokens signed by the operator (HS256 or RS256).

Algorithms are pinned by the key they need, so a token cannot choose its own way of being checked (`alg: none`,
or HS256 "signed" with the RS256 public key, are refused).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from oldphoto.errors import OldphotoError
from oldphoto.settings import Settings

COOKIE = "oldphoto_session"
ANONYMOUS_TTL_S = 7 * 24 * 3600
ANONYMOUS_PREFIX = "anon-"


class Unauthorized(OldphotoError):
    code = "unauthorized"
    http_status = 401


class SessionsDisabled(OldphotoError):
    code = "sessions_disabled"
    http_status = 403


@dataclass(frozen=True)
class Identity:
    user: str
    expires_at: float


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth
        self.secret = settings.jwt_secret or _kept_secret(settings.data_dir / "jwt-secret")
        self.public_key = settings.jwt_public_key_file.read_text() if settings.jwt_public_key_file else None
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer

    def issue(self, user: str | None = None, ttl_s: int = ANONYMOUS_TTL_S) -> str:
        now = int(time.time())
        claims: dict[str, object] = {"sub": user or f"{ANONYMOUS_PREFIX}{uuid.uuid4().hex}", "iat": now, "exp": now + ttl_s}
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> Identity:
        try:
            # Unverified and the sender's choice: anything but a string (a list, say) is no algorithm we accept.
            said = jwt.get_unverified_header(token).get("alg")
            algorithm = said if isinstance(said, str) else ""
            key = {"HS256": self.secret, "RS256": self.public_key}.get(algorithm)
            if key is None:
                raise Unauthorized("This token's signing algorithm is not accepted.")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Your session has expired; start a new one.", code="token_expired") from None
        # The library's own errors, and what slips past them on a token nobody has checked yet (a header nested past
        # the parser's depth, numbers it cannot convert): every one means "not a token we accept", never a 500.
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
            raise Unauthorized("The access token is not valid.") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise Unauthorized("The access token names no user.")
        try:
            expires_at = float(claims["exp"])  # an integer past a float's range (10**400) cannot be a real expiry
        except (TypeError, ValueError, OverflowError):
            raise Unauthorized("The access token is not valid.") from None
        return Identity(user=claims["sub"][:128], expires_at=expires_at)

    def from_sources(self, *candidates: str | None) -> Identity:
        """The first token present among header, cookie, query; a present but bad token is not skipped."""
        token = next((c for c in candidates if c), None)
        if token is None:
            raise Unauthorized("Sign in first: send a token (Authorization: Bearer ...) or get a session from POST /api/session.")
        return self.verify(token)


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _kept_secret(path: Path) -> str:
    """A signing key generated once and kept in the data dir, so sessions survive restarts."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(secret)
    tmp.chmod(0o600)
    tmp.replace(path)
    return secret
