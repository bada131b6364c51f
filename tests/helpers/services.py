"""The scale-out mode's services for real: a fresh PostgreSQL database and a Redis key space per test.

Where a service is not reachable the test is skipped on a developer's machine and fails under CI (`CI` set),
where `.ci/run` starts both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN = os.environ.get("OLDPHOTO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OLDPHOTO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc}); .ci/run starts it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty database, dropped afterwards."""
    import psycopg

    name = f"oldphoto_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_namespace() -> Iterator[tuple[str, str]]:
    """(Redis URL, a key prefix of its own): tests share the server, never each other's keys or channels."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    prefix = f"oldphoto-test-{secrets.token_hex(6)}"
    try:
        yield REDIS_URL, prefix
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def scale_out_env(database: str, broker: str, prefix: str) -> dict[str, str]:
    """The environment of every node of one test deployment: one store, one Redis prefix, one signing key."""
    return {
        "OLDPHOTO_DATABASE_URL": database,
        "OLDPHOTO_BROKER_URL": broker,
        "OLDPHOTO_BROKER_PREFIX": prefix,
        "OLDPHOTO_JWT_SECRET": secrets.token_urlsafe(32),
        "OLDPHOTO_TEST_NODES": "1",
    }
