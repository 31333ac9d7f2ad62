"""Reaching the machine's services (Redis, RabbitMQ, PostgreSQL) from tests.

A test that needs a service calls `require_service` first. On a developer machine an
unreachable service skips the test with a reason that says how to start it; with
`TEMPLATE_REQUIRE_SERVICES=1` (set by `.ci/run`) it fails instead, so CI can never go
green by skipping everything.
"""

from __future__ import annotations

import os
import socket

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


def require_service(name: str, host: str, port: int, timeout: float = 2.0) -> None:
    """Skip (developer machine) or fail (TEMPLATE_REQUIRE_SERVICES=1) unless host:port answers."""
    if service_reachable(host, port, timeout):
        return
    reason = (
        f"{name} is not reachable at {host}:{port}; start it (see .ci/run for the command) "
        f"to run this test"
    )
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_VAR}=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def require_redis() -> str:
    """Require the machine's Redis; return its base URL (no database number)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


def worker_index() -> int:
    """0 for a plain pytest run or xdist worker gw0, 1 for gw1, and so on."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def redis_db(purpose: int = 0) -> int:
    """A Redis database number for this xdist worker that other test runs are unlikely to use.

    Redis has databases 0-15; 0 and 1 are the rendered service's defaults, so tests use
    8-15. `purpose` (0 or 1) separates two uses within one worker (e.g. broker and
    results); workers gw0-gw3 get distinct numbers.
    """
    if purpose not in (0, 1):
        raise ValueError("purpose must be 0 or 1")
    return 8 + (worker_index() * 2 + purpose) % 8
