"""The rendered project's own test suite passes in its own environment.

For the default answers at each python_version, and for each booted variant
(tests/variants.py) at the default python_version. Twice each: without service variables
(its integration tests must skip, the rest must pass) and with them (its integration
tests must run, none skipped): REDIS_URL, RABBITMQ_URL and POSTGRES_URL as the variant
uses Redis, RabbitMQ and PostgreSQL, each naming a database or vhost made for the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.rendering import RenderedProject
from harness.services import service_urls
from tests.matrix import DEFAULT_PYTHON
from tests.projects import (
    PYTHON_VERSIONS,
    RenderedProjects,
    assert_suite_passes_against_services,
    report,
    run_suite,
)
from tests.variants import BOOT_VARIANTS, Variant


@dataclass(frozen=True)
class Suite:
    python_version: str
    variant: Variant


SUITES = [
    *(pytest.param(Suite(v, Variant()), id=f"py{v}") for v in PYTHON_VERSIONS),
    *(
        pytest.param(Suite(DEFAULT_PYTHON, b.variant), id=f"py{DEFAULT_PYTHON}-{b.id}")
        for b in BOOT_VARIANTS
        if not b.variant.is_default
    ),
]

pytestmark = pytest.mark.parametrize("suite", SUITES)


@pytest.fixture
def project(rendered_projects: RenderedProjects, suite: Suite) -> RenderedProject:
    return rendered_projects.synced(suite.python_version, suite.variant)


@pytest.fixture
def services(suite: Suite) -> Iterator[dict[str, str]]:
    """Service URLs for the variant, each a database or vhost of its own for this test."""
    with service_urls(suite.variant) as env:
        yield env


def test_suite_passes_without_services(project: RenderedProject, tmp_path: Path) -> None:
    # project_env drops any REDIS_URL etc. of ours, so the suite sees none.
    result, cases = run_suite(project, tmp_path / "junit.xml")
    if result.returncode != 0:
        pytest.fail(report(result), pytrace=False)
    unit = [c for c in cases if not c.integration]
    assert any(c.outcome == "passed" for c in unit), "no unit test passed\n" + report(result)
    ran = [c.name for c in cases if c.integration and c.outcome != "skipped"]
    assert not ran, f"integration tests ran without service variables: {ran}"


def test_suite_passes_against_services(
    project: RenderedProject, services: dict[str, str], tmp_path: Path
) -> None:
    assert_suite_passes_against_services(project, services, tmp_path / "junit.xml")
