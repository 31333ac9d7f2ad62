"""Reaching the machine's services (Redis, RabbitMQ, PostgreSQL) from tests and the benchmark.

A test that needs a service calls `require_service` first. On a developer machine an
unreachable service skips the test with a reason that says how to start it; with
`TEMPLATE_REQUIRE_SERVICES=1` (set by `.ci/run`) it fails instead, so CI can never go
green by skipping everything.

Each user gets its own part of a service, created for it and removed after:
`redis_database()` (a claimed database number), `rabbitmq_vhost()` (a fresh vhost, made
through the management HTTP API) and `postgres_database()` (a fresh database).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

REQUIRE_SERVICES_VAR = "TEMPLATE_REQUIRE_SERVICES"


class UsesServices(Protocol):
    """What `service_urls` reads of a variant (tests/variants.py's `Variant`)."""

    @property
    def uses_redis(self) -> bool: ...
    @property
    def broker(self) -> str: ...
    @property
    def result_backend(self) -> str: ...


REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_MANAGEMENT_PORT = 15672
RABBITMQ_USER = RABBITMQ_PASSWORD = "guest"  # guest may connect from localhost only
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"  # trusted on 127.0.0.1, no password


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


def _owner_is_gone(owner: bytes | str | None) -> bool:
    """A lock owned by a process of this machine that no longer exists (killed runs)."""
    if owner is None:
        return False
    if isinstance(owner, bytes):
        owner = owner.decode(errors="replace")
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def claim_redis_databases(
    count: int,
    *,
    host: str = REDIS_HOST,
    port: int = REDIS_PORT,
    candidates: range = range(8, 16),
    lease_seconds: int = 1800,
    wait_seconds: float = 300,
) -> Iterator[list[int]]:
    """Claim `count` databases of a Redis for the `with` block, flushed before and after.

    A database is claimed with `SET NX EX` of a lock key in db 0 holding
    `<host>:<pid>:<random>`, so xdist workers and concurrent test runs on this machine
    never share one. A lock whose process is gone (a killed run) is taken over at once;
    while others hold the rest, this waits up to `wait_seconds`. Databases 0 and 1 are the
    rendered service's defaults: never among the candidates.
    """
    import redis

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    control = redis.Redis(host=host, port=port, db=0, socket_timeout=5)
    claimed: list[int] = []
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            for db in candidates:
                if len(claimed) == count:
                    break
                key = REDIS_LOCK_KEY.format(db=db)
                if db in claimed:
                    continue
                held_by = control.get(key)
                if _owner_is_gone(held_by):
                    with control.pipeline() as pipe:  # delete only if still that owner's
                        try:
                            pipe.watch(key)
                            if pipe.get(key) == held_by:
                                pipe.multi()
                                pipe.delete(key)
                                pipe.execute()
                        except redis.WatchError:
                            pass
                if control.set(key, owner, nx=True, ex=lease_seconds):
                    claimed.append(db)
            if len(claimed) == count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"could not claim {count} Redis databases among {list(candidates)} "
                    f"within {wait_seconds:.0f} s (claimed {claimed}): other test runs hold "
                    f"the rest ('{REDIS_LOCK_KEY.format(db='*')}' keys in db 0)"
                )
            time.sleep(1)
        for db in claimed:
            redis.Redis(host=host, port=port, db=db, socket_timeout=5).flushdb()
        yield claimed
    finally:
        for db in claimed:
            with contextlib.suppress(redis.RedisError):
                redis.Redis(host=host, port=port, db=db, socket_timeout=5).flushdb()
            key = REDIS_LOCK_KEY.format(db=db)
            with contextlib.suppress(redis.RedisError):
                if control.get(key) == owner.encode():
                    control.delete(key)
        control.close()


@contextlib.contextmanager
def redis_database(candidates: range = range(8, 16), lease_seconds: int = 1800) -> Iterator[str]:
    """Claim one database (8-15) of the machine's Redis for the `with` block; yield its URL.

    Flushed before and after (`claim_redis_databases`; `processes.redis_databases` uses 2-7).
    """
    base = require_redis()
    with claim_redis_databases(1, candidates=candidates, lease_seconds=lease_seconds) as (db,):
        yield f"{base}/{db}"


def require_rabbitmq() -> None:
    """Require the machine's RabbitMQ and its management HTTP API (plugin enabled)."""
    require_service("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    require_service(
        "RabbitMQ's management API (rabbitmq-plugins enable rabbitmq_management)",
        RABBITMQ_HOST,
        RABBITMQ_MANAGEMENT_PORT,
    )


def rabbitmq_api_url(path: str = "") -> str:
    return f"http://{RABBITMQ_HOST}:{RABBITMQ_MANAGEMENT_PORT}/api/{path}"


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "template-test") -> Iterator[str]:
    """A fresh RabbitMQ vhost for the `with` block (guest may use it); yield its AMQP URL.

    Created and deleted through the management HTTP API, so queues, exchanges and messages
    never outlive the block nor meet another test's.
    """
    import httpx

    require_rabbitmq()
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    auth = (RABBITMQ_USER, RABBITMQ_PASSWORD)
    with httpx.Client(auth=auth, timeout=30) as api:
        response = api.put(rabbitmq_api_url(f"vhosts/{name}"))
        if response.status_code not in (201, 204):
            pytest.fail(f"creating vhost {name}: HTTP {response.status_code} {response.text}")
        try:
            response = api.put(
                rabbitmq_api_url(f"permissions/{name}/{RABBITMQ_USER}"),
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
            if response.status_code not in (201, 204):
                pytest.fail(f"permissions on {name}: HTTP {response.status_code} {response.text}")
            yield (
                f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{name}"
            )
        finally:
            with contextlib.suppress(httpx.HTTPError):
                api.delete(rabbitmq_api_url(f"vhosts/{name}"))


def require_postgres() -> str:
    """Require the machine's PostgreSQL; return the URL of its maintenance database."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return postgres_url("postgres")


def postgres_url(database: str) -> str:
    return f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


@contextlib.contextmanager
def postgres_database(prefix: str = "template_test") -> Iterator[str]:
    """A fresh PostgreSQL database for the `with` block; yield its URL (postgresql://...).

    Dropped afterwards, with whatever connections are still open to it.
    """
    import psycopg

    maintenance = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def service_urls(variant: UsesServices) -> Iterator[dict[str, str]]:
    """The variables a rendered project's integration tests read, each naming a fresh part
    of a service: REDIS_URL (a claimed database) when the variant uses Redis, RABBITMQ_URL
    (a vhost) with RabbitMQ, POSTGRES_URL (a database) with PostgreSQL."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if variant.uses_redis:
            env["REDIS_URL"] = stack.enter_context(redis_database())
        if variant.broker == "rabbitmq":
            env["RABBITMQ_URL"] = stack.enter_context(rabbitmq_vhost())
        if variant.result_backend == "postgresql":
            env["POSTGRES_URL"] = stack.enter_context(postgres_database())
        yield env
