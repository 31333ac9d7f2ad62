"""The template's own CI workflow (.github/workflows/ci.yml): valid, and it runs this suite
as `.ci/run` and the README do, every test in exactly one job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.rendering import TEMPLATE_ROOT
from harness.services import (
    POSTGRES_PORT,
    RABBITMQ_MANAGEMENT_PORT,
    RABBITMQ_PORT,
    REDIS_PORT,
    REQUIRE_SERVICES_VAR,
)
from tests.projects import PYTHON_VERSIONS
from tests.shards import SHARDS

WORKFLOW = TEMPLATE_ROOT / ".github" / "workflows" / "ci.yml"
SHARD_ARGUMENT = "--shard ${{ matrix.shard }}"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def job(workflow: dict[Any, Any]) -> dict[str, Any]:
    jobs = workflow["jobs"]
    assert list(jobs) == ["tests"], f"one job, a matrix of shards: {list(jobs)}"
    found = jobs["tests"]
    assert isinstance(found, dict)
    return found


def ci_run_pytest_command() -> str:
    """The pytest command `.ci/run` ends with."""
    script = (TEMPLATE_ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"(?m)^exec (uv run pytest\b.*)$", script)
    assert len(commands) == 1, f".ci/run should end with `exec uv run pytest ...`: {commands}"
    return commands[0].strip()


def step_runs(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]).strip() for step in job["steps"] if "run" in step]


def test_workflow_matches_github_schema() -> None:
    beside = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(beside), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_workflow_runs_on_push_pull_request_and_schedule(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert isinstance(triggers, dict)
    assert {"push", "pull_request", "schedule"} <= set(triggers), triggers
    assert triggers["schedule"], "no cron in schedule"


def test_workflow_runs_the_command_of_ci_run_and_readme(job: dict[str, Any]) -> None:
    command = ci_run_pytest_command()
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    assert re.search(rf"(?m)^\s*{re.escape(command)}\s*$", readme), (
        f"README.md does not give `{command}`, the command .ci/run runs"
    )
    runs = step_runs(job)
    pytest_runs = [r for r in runs if "pytest" in r]
    assert pytest_runs == [f"{command} {SHARD_ARGUMENT}"], pytest_runs
    # As .ci/run: the locked environment first, and no skipping for a missing service.
    assert "uv sync --locked" in runs[: runs.index(pytest_runs[0])]
    assert str(job["env"][REQUIRE_SERVICES_VAR]) == "1"
    assert f"export {REQUIRE_SERVICES_VAR}=1" in (TEMPLATE_ROOT / ".ci" / "run").read_text()


def test_workflow_enables_every_python_version_and_uv(job: dict[str, Any]) -> None:
    uses = {str(step.get("uses", "")).partition("@")[0]: step for step in job["steps"]}
    assert "astral-sh/setup-uv" in uses
    versions = str(uses["actions/setup-python"]["with"]["python-version"]).split()
    assert versions == list(PYTHON_VERSIONS)


def test_workflow_services_are_those_the_tests_reach(job: dict[str, Any]) -> None:
    services = job["services"]
    images = {name: str(service["image"]) for name, service in services.items()}
    ports = {str(p) for service in services.values() for p in service.get("ports", [])}
    assert any(i.startswith("redis:") for i in images.values()), images
    assert any(i.startswith("postgres:") for i in images.values()), images
    assert any(i.startswith("rabbitmq:") and "management" in i for i in images.values()), images
    wanted = {REDIS_PORT, RABBITMQ_PORT, RABBITMQ_MANAGEMENT_PORT, POSTGRES_PORT}
    assert {f"{p}:{p}" for p in wanted} <= ports, ports
    postgres = next(s for s in services.values() if str(s["image"]).startswith("postgres:"))
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"  # tests/services.py


def test_workflow_has_one_job_per_shard(job: dict[str, Any]) -> None:
    assert job["strategy"]["matrix"]["shard"] == list(SHARDS)
    assert job["strategy"].get("fail-fast") is False, "one red shard must not cancel the rest"


def collected(*args: str) -> list[str]:
    """Node ids `pytest --collect-only` selects from this suite with args."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
        cwd=TEMPLATE_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # 5: no test selected, which the caller reports.
    assert result.returncode in (0, 5), f"collecting {args}:\n{result.stdout}\n{result.stderr}"
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_every_test_runs_in_exactly_one_shard() -> None:
    everything = collected()
    assert len(everything) == len(set(everything))
    by_shard = {shard: collected("--shard", shard) for shard in SHARDS}
    empty = [shard for shard, ids in by_shard.items() if not ids]
    assert not empty, f"shards that select no test (pytest exits 5): {empty}"
    runs: dict[str, list[str]] = {}
    for shard, ids in by_shard.items():
        for nodeid in ids:
            runs.setdefault(nodeid, []).append(shard)
    never = [nodeid for nodeid in everything if nodeid not in runs]
    twice = {nodeid: shards for nodeid, shards in runs.items() if len(shards) > 1}
    assert not never, f"tests in no shard: {never[:20]}"
    assert not twice, f"tests in several shards: {dict(list(twice.items())[:20])}"
    assert set(runs) == set(everything)
