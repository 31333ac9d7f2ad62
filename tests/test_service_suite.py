"""The rendered project's own test suite passes in its own environment.

Once without REDIS_URL (its integration tests must skip, the rest must pass) and once
against the machine's Redis in a database claimed for the test (its integration
tests must run, none skipped).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.projects import RenderedProjects, python_version_params
from tests.rendering import RenderedProject
from tests.services import redis_database

pytestmark = pytest.mark.parametrize("python_version", python_version_params())

SUITE_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # passed | skipped | failed

    @property
    def integration(self) -> bool:
        return ".integration." in f".{self.name}"


def run_suite(
    project: RenderedProject, junit: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[Case]]:
    result = project.run(
        "pytest",
        "-p",
        "no:copie",
        "-p",
        "no:cacheprovider",  # other workers may run in the same synced project
        "-q",
        "-rs",
        f"--junit-xml={junit}",
        env=env,
        timeout=SUITE_TIMEOUT_SECONDS,
    )
    cases = []
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            outcome = "passed"
            if case.find("skipped") is not None:
                outcome = "skipped"
            elif case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            cases.append(Case(f"{case.get('classname')}.{case.get('name')}", outcome))
    return result, cases


def report(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"the rendered project's pytest exited {result.returncode}\n"
        f"{result.stdout[-12000:]}\n{result.stderr[-4000:]}"
    )


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a database claimed for this test, empty before and after."""
    with redis_database() as url:
        yield url


def test_suite_passes_without_redis(
    rendered_projects: RenderedProjects, python_version: str, tmp_path: Path
) -> None:
    project = rendered_projects.synced(python_version)
    # project_env drops any REDIS_URL of ours, so the suite sees none.
    result, cases = run_suite(project, tmp_path / "junit.xml")
    if result.returncode != 0:
        pytest.fail(report(result), pytrace=False)
    unit = [c for c in cases if not c.integration]
    assert any(c.outcome == "passed" for c in unit), "no unit test passed\n" + report(result)
    ran = [c.name for c in cases if c.integration and c.outcome != "skipped"]
    assert not ran, f"integration tests ran without REDIS_URL: {ran}"


def test_suite_passes_against_redis(
    rendered_projects: RenderedProjects, python_version: str, redis_url: str, tmp_path: Path
) -> None:
    project = rendered_projects.synced(python_version)
    result, cases = run_suite(project, tmp_path / "junit.xml", env={"REDIS_URL": redis_url})
    if result.returncode != 0:
        pytest.fail(report(result), pytrace=False)
    integration = [c for c in cases if c.integration]
    assert integration, "the rendered project has no integration tests\n" + report(result)
    skipped = [c.name for c in integration if c.outcome == "skipped"]
    assert not skipped, f"integration tests skipped with REDIS_URL={redis_url}: {skipped}"
