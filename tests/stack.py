"""The stack of a booted variant, which the boot tests (tests/test_boot_*.py) share.

One stack per booted variant (tests/variants.py `BOOT_VARIANTS`: every broker x result
backend pair, each option on and off at least once), at the default python_version. The
stack: a broker and a result backend of its own (Redis databases, a RabbitMQ vhost, a
PostgreSQL database), an SMTP sink and a webhook receiver when the variant has email and
webhooks, the API (uvicorn), Flower when it has Flower and, from the first test that
needs it on, one Celery worker; beat last, for the tests of periodic tasks.

Each test is generated only for the variants it applies to (`@each(applies)`), never
skipped. The fixtures (`boot`, `stack`, `worker`, `beat`, in conftest.py) are backed by
one session-wide `BootedStacks`, and `boot` is parametrized at session scope: a variant's
tests run together, across the boot modules, and its stack boots once per worker; it stops
after the worker's last test of that variant. Under xdist a variant's tests are one unit
of work for one worker (conftest's scheduler). Order matters within a variant: the first
tests (test_boot_endpoints.py) need the API up and no worker yet; beat's tests come last
(test_boot_beat.py; its tasks write results). `BOOT_MODULES` in tests/variants.py gives
the order of the modules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
    api_process,
    free_port,
    worker_process,
)
from harness.rendering import RenderedProject
from harness.services import (
    RABBITMQ_HOST,
    RABBITMQ_MANAGEMENT_PORT,
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
)
from harness.sse import read_sse
from tests.boot import BOOT_API_KEY, JSON_CONTENT, api_headers, wait_for_task
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.receivers import SmtpSink, WebhookReceiver
from tests.records import Backends, variant_backends
from tests.variants import BootVariant, Variant, boot_params

REPORT_STEPS = 20
REPORT_STEP_DELAY_SECONDS = 0.1  # a report runs 2 s: long enough to be cancelled mid-way
MAX_BODY_BYTES = 1024
MAX_JSON_ITEMS = 50  # small enough to pass in a body under MAX_BODY_BYTES
FLOWER_USER, FLOWER_PASSWORD = "admin", "flower-boot-password-0123456789"
TASK_TIMEOUT = 30.0
# Status polls: routine access-log lines, left out of the API's log tail in failure reports.
STATUS_POLL_LINE = r'"GET /api/task/[^/ ]+ HTTP/1\.1" 200'

FINAL_STATUSES = frozenset({"success", "failure", "revoked"})
# The origin whose pages may call the booted APIs (CORS_ALLOW_ORIGINS), and one that may not.
ALLOWED_ORIGIN, FOREIGN_ORIGIN = "https://app.example.com", "https://elsewhere.example.net"


def each(applies: Callable[[Variant], bool] = lambda _: True) -> pytest.MarkDecorator:
    """Generate the test for each booted variant it applies to (one stack per variant)."""
    return pytest.mark.parametrize("boot", boot_params(applies), indirect=True, scope="session")


def canonical_checksum(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Stack:
    variant: Variant
    project: RenderedProject
    env: dict[str, str]
    logs: Path
    backends: Backends
    api: ServiceProcess
    client: httpx.Client
    flower: ServiceProcess | None
    smtp: SmtpSink | None
    webhooks: WebhookReceiver | None
    webhook_secret: str
    flower_url: str
    worker: ServiceProcess | None = None
    beat: ServiceProcess | None = None

    @property
    def package(self) -> str:
        return self.project.package_name

    @property
    def headers(self) -> dict[str, str]:
        """What every client of the API sends: the API key, if the variant has keys."""
        return api_headers(self.variant)

    def diagnostics(self) -> str:
        parts = [self.api.describe("API", 30)]
        for process, lines in ((self.worker, 40), (self.beat, 20)):
            if process is not None:
                parts.append(process.describe(process.name, lines))
        return "\n".join(parts)

    # -- HTTP helpers ------------------------------------------------------------------

    def expect(self, response: httpx.Response, status: int) -> Any:
        """The JSON body of a response that must have `status`."""
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url} -> {response.status_code}, "
            f"expected {status}: {response.text[:1000]}\n{self.diagnostics()}"
        )
        return response.json()

    def submit(self, path: str, client: httpx.Client | None = None, **kwargs: Any) -> str:
        """POST a task (through `client`, else the stack's); check the 202 body; return the
        task id. A POST without a body declares JSON all the same."""
        if not {"json", "content", "data", "files"} & set(kwargs):
            kwargs["headers"] = {**JSON_CONTENT, **kwargs.get("headers", {})}
        body = self.expect((client or self.client).post(path, **kwargs), 202)
        assert body["status"] == "queued", body
        assert isinstance(body["message"], str) and body["message"], body
        assert isinstance(body["task_id"], str) and body["task_id"], body
        return str(body["task_id"])

    def wait_for_task(
        self,
        task_id: str,
        until: frozenset[str] = FINAL_STATUSES,
        timeout: float = TASK_TIMEOUT,
        seen: list[str] | None = None,
    ) -> dict[str, Any]:
        """Poll GET /api/task/{id} until its status is in `until`; every raw body read is
        appended to `seen`."""
        return wait_for_task(
            self.client,
            task_id,
            until,
            timeout=timeout,
            diagnostics=self.diagnostics,
            seen=seen,
        )

    def expect_success(self, task_id: str, seen: list[str] | None = None) -> Any:
        body = self.wait_for_task(task_id, seen=seen)
        assert body["status"] == "success", f"{body}\n{self.diagnostics()}"
        assert body["error"] is None, body
        return body["result"]

    def stream(self, task_id: str, timeout: float, **kwargs: Any) -> Any:
        return read_sse(
            f"{self.client.base_url}/api/task/{task_id}/stream",
            timeout=timeout,
            headers=self.headers,
            **kwargs,
        )


# --------------------------------------------------------------------------------------
# Fixtures


def _refused_for_good(recipient: str) -> bool:  # the SMTP sink answers 550
    return recipient.startswith("reject-")


def _refused_once(recipient: str) -> bool:  # the SMTP sink answers 451, then accepts
    return recipient.startswith("defer-")


def _webhook_status(path: str) -> int:
    return 500 if path.startswith("/fail") else 200


def stack_env(variant: Variant, backends: Backends, smtp: SmtpSink | None) -> dict[str, str]:
    env = {
        "CELERY_BROKER_URL": backends.broker_url,
        "CELERY_RESULT_BACKEND": backends.result_backend_url,
        "REPORT_STEPS": str(REPORT_STEPS),
        "REPORT_STEP_DELAY_SECONDS": str(REPORT_STEP_DELAY_SECONDS),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "CORS_ALLOW_ORIGINS": ALLOWED_ORIGIN,
        "MAX_JSON_ITEMS": str(MAX_JSON_ITEMS),
        "PYTHONUNBUFFERED": "1",
    }
    if variant.has_api_key:
        env["API_KEYS"] = f"another-boot-test-key-0123456789,{BOOT_API_KEY}"
    if variant.use_sse:
        env |= {"SSE_PING_SECONDS": "1", "RESULT_POLL_INTERVAL_SECONDS": "0.05"}
    if smtp is not None:
        env |= {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_STARTTLS": "false",
            "SMTP_TIMEOUT_SECONDS": "5",
            "EMAIL_MAX_RETRIES": "3",
            "EMAIL_RETRY_BACKOFF_SECONDS": "0.1",
        }
    if variant.use_webhooks:
        env |= {
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "WEBHOOK_MAX_RETRIES": "2",
            "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.1",
        }
    if variant.use_flower:
        env["FLOWER_BASIC_AUTH"] = f"{FLOWER_USER}:{FLOWER_PASSWORD}"
        if variant.broker == "rabbitmq":
            env["FLOWER_BROKER_API"] = (
                f"http://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:"
                f"{RABBITMQ_MANAGEMENT_PORT}/api/"
            )
    if variant.use_beat:
        env["HEARTBEAT_INTERVAL_SECONDS"] = "1"
        if variant.result_backend == "postgresql":
            env["RESULT_CLEANUP_INTERVAL_SECONDS"] = "1"
    return env


@contextlib.contextmanager
def boot_stack(
    variant: Variant, backends: Backends, project: RenderedProject, logs: Path
) -> Iterator[Stack]:
    """Everything but the worker and beat, started and ready."""
    webhook_secret = secrets.token_hex(16)
    with contextlib.ExitStack() as parts:
        smtp = (
            parts.enter_context(SmtpSink(reject=_refused_for_good, defer_once=_refused_once))
            if variant.use_email
            else None
        )
        webhooks = (
            parts.enter_context(WebhookReceiver(status_for=_webhook_status))
            if variant.use_webhooks
            else None
        )
        env = stack_env(variant, backends, smtp)
        if variant.use_webhooks:
            env["WEBHOOK_SECRET"] = webhook_secret
        api_port, flower_port = free_port(), free_port()
        api = api_process(
            project, port=api_port, env=env, log_path=logs / "api.log", tail_skip=STATUS_POLL_LINE
        )
        parts.enter_context(api)
        flower = None
        if variant.use_flower:
            flower = ServiceProcess(
                name="flower",
                args=[
                    "celery",
                    "-A",
                    f"{project.package_name}.celery_app",
                    "flower",
                    f"--port={flower_port}",
                    "--address=127.0.0.1",
                ],
                cwd=project.path,
                env=env,
                log_path=logs / "flower.log",
                ready_url=f"http://127.0.0.1:{flower_port}/",
                ready_status=None,  # 401 without credentials is ready too
            )
            parts.enter_context(flower)
        client = parts.enter_context(
            httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}", timeout=10, headers=api_headers(variant)
            )
        )
        yield Stack(
            variant=variant,
            project=project,
            env=env,
            logs=logs,
            backends=backends,
            api=api,
            client=client,
            flower=flower,
            smtp=smtp,
            webhooks=webhooks,
            webhook_secret=webhook_secret,
            flower_url=f"http://127.0.0.1:{flower_port}",
        )


@contextlib.contextmanager
def run_worker(stack: Stack) -> Iterator[ServiceProcess]:
    """The stack's Celery worker (prefork, with events), recorded in the stack meanwhile."""
    process = worker_process(
        stack.project,
        env=stack.env,
        log_path=stack.logs / "worker.log",
        options=("-E", "--pool=prefork"),
    )
    with process:
        stack.worker = process
        yield process
        stack.worker = None


@contextlib.contextmanager
def run_beat(stack: Stack) -> Iterator[ServiceProcess]:
    """celery beat, as compose runs it, with the schedule file in the logs folder."""
    process = ServiceProcess(
        name="beat",
        args=[
            "celery",
            "-A",
            f"{stack.package}.celery_app",
            "beat",
            "--loglevel=INFO",
            f"--schedule={stack.logs / 'celerybeat-schedule'}",
        ],
        cwd=stack.project.path,
        env=stack.env,
        log_path=stack.logs / "beat.log",
        ready_log=r"beat: Starting",
    )
    with process:
        stack.beat = process
        yield process
        stack.beat = None


class BootedStacks:
    """A worker's booted stack: one variant's at a time, booted when a test first asks for
    it, its worker and beat when a test first needs them; all stopped by `close()`, when the
    worker's next test is of another variant or no boot test (conftest.py), or at the end.

    A part that failed to start fails every later test that needs it, without a new try, as
    a fixture's error would.
    """

    def __init__(
        self, rendered_projects: RenderedProjects, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        self._rendered_projects = rendered_projects
        self._tmp_path_factory = tmp_path_factory
        self._parts = contextlib.ExitStack()
        self._boot: BootVariant | None = None
        self._stack: Stack | None = None
        self._failures: dict[str, BaseException] = {}

    def _start(self, part: str, start: Callable[[], object]) -> None:
        if part in self._failures:
            raise self._failures[part]
        try:
            start()
        except BaseException as error:
            self._failures[part] = error
            raise

    def stack(self, boot: BootVariant) -> Stack:
        """Everything but the worker and beat, started and ready."""
        if boot != self._boot:
            self.close()
            self._boot = boot

            def start() -> None:
                backends = self._parts.enter_context(
                    variant_backends(boot.variant.broker, boot.variant.result_backend)
                )
                project = self._rendered_projects.synced(DEFAULT_PYTHON, boot.variant)
                logs = self._tmp_path_factory.mktemp(f"boot-{boot.letter}")
                self._stack = self._parts.enter_context(
                    boot_stack(boot.variant, backends, project, logs)
                )

            self._start("stack", start)
        if "stack" in self._failures:
            raise self._failures["stack"]
        assert self._stack is not None
        return self._stack

    def worker(self, stack: Stack) -> ServiceProcess:
        if stack.worker is None:
            self._start("worker", lambda: self._parts.enter_context(run_worker(stack)))
        assert stack.worker is not None
        return stack.worker

    def beat(self, stack: Stack) -> ServiceProcess:
        self.worker(stack)
        if stack.beat is None:
            self._start("beat", lambda: self._parts.enter_context(run_beat(stack)))
        assert stack.beat is not None
        return stack.beat

    def close(self) -> None:
        """Stop the stack's processes and remove its backends (in the reverse order)."""
        try:
            self._parts.close()
        finally:
            self._parts = contextlib.ExitStack()
            self._boot = self._stack = None
            self._failures = {}


def api_with_env(stack: Stack, name: str, **changes: str) -> tuple[ServiceProcess, str]:
    """A second API process of the stack, with `changes` to its environment (and 1 s socket
    timeouts); not started. Returns it and its base URL."""
    port = free_port()
    api = api_process(
        stack.project,
        port=port,
        env={**stack.env, "BROKER_SOCKET_TIMEOUT_SECONDS": "1", **changes},
        log_path=stack.logs / f"{name}.log",
        name=name,
        ready_timeout=30,
    )
    return api, f"http://127.0.0.1:{port}"
