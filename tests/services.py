"""Reaching the machine's services (Redis, RabbitMQ, PostgreSQL) from tests.

A test that needs a service calls `require_service` first. On a developer machine an
unreachable service skips the test with a reason that says how to start it; with
`TEMPLATE_REQUIRE_SERVICES=1` (set by `.ci/run`) it fails instead, so CI can never go
green by skipping everything.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

REQUIRE_SERVICES_VAR = "TEMPLATE_REQUIRE_SERVICES"

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432


def services_required() -> bool:
    """True when an unreachable service must fail the run instead of skipping."""
    return os.environ.get(REQUIRE_SERVICES_VAR, "").strip().lower() in {"1", "true", "yes"}


def service_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail where services are required (CI)."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_VAR}=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def require_service(name: str, host: str, port: int, timeout: float = 2.0) -> None:
    """Skip (developer machine) or fail (TEMPLATE_REQUIRE_SERVICES=1) unless host:port answers."""
    if service_reachable(host, port, timeout):
        return
    reason = (
        f"{name} is not reachable at {host}:{port}; start it (see .ci/run for the command) "
        f"to run this test"
    )
    skip_or_fail(reason)


def require_redis() -> str:
    """Require the machine's Redis; return its base URL (no database number)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


REDIS_LOCK_KEY = "fastapi-celery-template:tests:db-lock:{db}"


@contextlib.contextmanager
def redis_database(candidates: range = range(8, 16), lease_seconds: int = 1800) -> Iterator[str]:
    """Claim one database of the machine's Redis for the `with` block; yield its URL.

    The database is flushed before and after. It is claimed with `SET NX EX` of a lock
    key in db 0 (the same scheme as tests/boot.py, which uses databases 2-7), so xdist
    workers and concurrent test runs on this machine never share one. Databases 0 and 1
    are the rendered service's defaults and are never used.
    """
    import redis

    base = require_redis()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    control = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, socket_timeout=5)
    claimed: int | None = None
    try:
        for db in candidates:
            if control.set(REDIS_LOCK_KEY.format(db=db), owner, nx=True, ex=lease_seconds):
                claimed = db
                break
        if claimed is None:
            pytest.fail(
                f"no free Redis database among {list(candidates)}: other test runs hold them, "
                f"or stale '{REDIS_LOCK_KEY.format(db='*')}' keys in db 0 "
                f"(they expire after {lease_seconds} s)",
                pytrace=False,
            )
        database = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=claimed, socket_timeout=5)
        database.flushdb()
        try:
            yield f"{base}/{claimed}"
        finally:
            with contextlib.suppress(redis.RedisError):
                database.flushdb()
            database.close()
    finally:
        if claimed is not None:
            key = REDIS_LOCK_KEY.format(db=claimed)
            with contextlib.suppress(redis.RedisError):
                if control.get(key) == owner.encode():
                    control.delete(key)
        control.close()
