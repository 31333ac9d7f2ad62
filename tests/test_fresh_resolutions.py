"""Fresh renders pass their README checks at both ends of their dependency bounds.

No lock file is rendered, so a user's first `uv sync` gets the newest releases the bounds
allow, and `uv sync --resolution lowest-direct` the lowest ones: what the bounds promise.
Both are resolved here afresh for each project (not through this repository's uv.lock,
nothing pinned), so a release that breaks a render turns the suite red, as it would break
the render of a user.

The checks are the rendered README's: ruff check, ruff format --check, mypy, and pytest
against real services (its integration tests run, none skipped). The default answers at
every python_version and the booted rabbitmq + postgresql variant (B) at the lowest and
highest python_version, each resolved both ways. Checks that other modules already run on
the same environment are not run again here:

- newest, default answers, every python_version: ruff and mypy in test_render_static.py,
  pytest in test_service_suite.py;
- newest, booted variants at the default python_version: pytest in test_service_suite.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.rendering import LOWEST_DIRECT, NEWEST, RenderedProject
from harness.services import service_urls
from tests.matrix import DEFAULT_PYTHON
from tests.projects import (
    PYTHON_VERSIONS,
    RenderedProjects,
    assert_suite_passes_against_services,
)
from tests.variants import BOOT_VARIANTS, Variant

RABBITMQ_POSTGRESQL = next(b.variant for b in BOOT_VARIANTS if b.letter == "B")

# The README's static checks. No caches: other workers run commands in the same project.
STATIC_CHECKS = {
    "ruff-check": ("ruff", "check", "--no-cache", "."),
    "ruff-format": ("ruff", "format", "--check", "--no-cache", "."),
    "mypy": ("mypy", "--cache-dir=/dev/null"),
}
PYTEST = "pytest"


@dataclass(frozen=True)
class Resolved:
    python_version: str
    variant: Variant
    resolution: str

    @property
    def id(self) -> str:
        name = "default" if self.variant.is_default else "rabbitmq-postgresql"
        return f"py{self.python_version}-{name}-{self.resolution}"


def _run_elsewhere(resolved: Resolved, check: str) -> bool:
    """Whether another module already runs this check on this environment (see above)."""
    if resolved.resolution != NEWEST:
        return False
    if resolved.variant.is_default:
        return True
    booted = any(b.variant == resolved.variant for b in BOOT_VARIANTS)
    return check == PYTEST and booted and resolved.python_version == DEFAULT_PYTHON


RESOLVED = [
    Resolved(python_version, variant, resolution)
    for python_version, variant in [
        *((v, Variant()) for v in PYTHON_VERSIONS),
        (PYTHON_VERSIONS[0], RABBITMQ_POSTGRESQL),
        (PYTHON_VERSIONS[-1], RABBITMQ_POSTGRESQL),
    ]
    for resolution in (NEWEST, LOWEST_DIRECT)
]


def _resolved_for(check: str) -> list[Resolved]:
    return [r for r in RESOLVED if not _run_elsewhere(r, check)]


@pytest.fixture
def project(rendered_projects: RenderedProjects, resolved: Resolved) -> RenderedProject:
    return rendered_projects.synced(resolved.python_version, resolved.variant, resolved.resolution)


@pytest.fixture
def services(resolved: Resolved) -> Iterator[dict[str, str]]:
    with service_urls(resolved.variant) as env:
        yield env


@pytest.mark.parametrize(
    ("resolved", "check"),
    [
        pytest.param(resolved, check, id=f"{resolved.id}-{check}")
        for check in STATIC_CHECKS
        for resolved in _resolved_for(check)
    ],
)
def test_static_check_passes(project: RenderedProject, check: str) -> None:
    result = project.run(*STATIC_CHECKS[check])
    if result.returncode != 0:
        command = " ".join(STATIC_CHECKS[check])
        pytest.fail(
            f"`{command}` exited {result.returncode}\n{result.stdout}\n{result.stderr}".strip(),
            pytrace=False,
        )


@pytest.mark.parametrize(
    "resolved", [pytest.param(resolved, id=resolved.id) for resolved in _resolved_for(PYTEST)]
)
def test_suite_passes_against_services(
    project: RenderedProject, services: dict[str, str], tmp_path: Path
) -> None:
    assert_suite_passes_against_services(project, services, tmp_path / "junit.xml")
