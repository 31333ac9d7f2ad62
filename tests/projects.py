"""Rendered projects shared by the static, service-suite and boot tests.

Rendering is cheap (~0.2 s); `uv sync` in a rendered project is not. So:

- `RenderedProjects.get(v)` renders the default answers for python_version v once per
  worker process, into a folder no command ever runs in: the file checks see exactly what
  Copier wrote.
- `RenderedProjects.synced(v)` (or `.synced(v, variant)` for other answers to the option
  questions) renders a second copy and runs `uv sync` in it once per
  pytest run, shared by all xdist workers (a file lock in the run's common temporary
  folder; whichever worker comes first syncs, the others wait and reuse it). Commands run
  there concurrently, so they must not share caches: `ruff --no-cache`, mypy
  `--cache-dir=/dev/null`, nested pytest `-p no:cacheprovider`. Nothing is locked in
  advance: the sync resolves the newest releases, as a user's first one does, or with
  `resolution=LOWEST_DIRECT` the lowest the bounds allow.
- `run_suite()` runs a synced project's own pytest; `assert_suite_passes_against_services()`
  asserts it passes with real services, its integration tests included.

(xdist's `--dist loadgroup` would be the obvious way to keep a version on one worker, but
with pytest 9.2 and pytest-xdist 3.8 it silently does not group: pytest-xdist#1386.)
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.rendering import (
    NEWEST,
    RenderedProject,
    available_python_versions,
    copier_answers,
    render,
)
from harness.services import skip_or_fail
from tests.variants import Variant

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")  # the choices of copier.yml's python_version


def python_version_params() -> list[object]:
    """Every python_version choice, as parameters with readable ids."""
    return [pytest.param(v, id=f"py{v}") for v in PYTHON_VERSIONS]


def require_python(version: str) -> None:
    """Skip (developer machine) or fail (TEMPLATE_REQUIRE_SERVICES=1) without that Python."""
    if version in available_python_versions():
        return
    skip_or_fail(
        f"python{version} is not available on this machine "
        f"(with pyenv: `pyenv global 3.11.7 3.12.1 3.13.0`)"
    )


@dataclass(frozen=True)
class DefaultProject:
    project: RenderedProject
    python_version: str
    # Every file Copier wrote, relative to the project root.
    files: tuple[Path, ...]

    @property
    def path(self) -> Path:
        return self.project.path


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_once(folder: Path, build: Callable[[], None]) -> None:
    """Run build for folder once per pytest run, in whichever xdist worker comes first.

    The outcome is recorded in folder, so every worker fails alike when the build failed.
    """
    ok, failed = folder / "prepared.ok", folder / "prepared.failed"
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder.with_name(f"{folder.name}.lock")):
        if not ok.exists() and not failed.exists():
            try:
                build()
            except Exception as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}")
            else:
                ok.write_text("")
    if failed.exists():
        pytest.fail(f"preparing {folder}: {failed.read_text()}", pytrace=False)


@dataclass
class RenderedProjects:
    local_root: Path  # this worker's own
    shared_root: Path  # common to all workers of this pytest run
    _projects: dict[str, DefaultProject] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)

    def get(self, python_version: str) -> DefaultProject:
        """The default project for python_version as rendered (no command run in it)."""
        require_python(python_version)
        if python_version in self._errors:
            pytest.fail(f"(earlier attempt) {self._errors[python_version]}", pytrace=False)
        if python_version not in self._projects:
            destination = self.local_root / f"py{python_version}" / "my-service"
            try:
                project = render(destination, python_version=python_version)
            except Exception as exc:
                self._errors[python_version] = f"rendering failed: {type(exc).__name__}: {exc}"
                raise
            files = tuple(
                sorted(p.relative_to(destination) for p in destination.rglob("*") if p.is_file())
            )
            self._projects[python_version] = DefaultProject(project, python_version, files)
        return self._projects[python_version]

    def synced(
        self, python_version: str, variant: Variant | None = None, resolution: str = NEWEST
    ) -> RenderedProject:
        """The project for python_version (and variant: default answers if None) with its
        own environment: `uv sync`, resolving the newest releases its bounds allow, or with
        `resolution=LOWEST_DIRECT` the lowest."""
        require_python(python_version)
        variant = variant or Variant()
        name = f"synced-py{python_version}" + ("" if variant.is_default else f"-{variant.id}")
        if resolution != NEWEST:
            name += f"-{resolution}"
        destination = self.shared_root / name / "my-service"

        def render_and_sync() -> None:
            project = render(destination, python_version=python_version, **variant.answers)
            project.sync(resolution)

        prepare_once(destination.parent, render_and_sync)
        return RenderedProject(destination, copier_answers(destination))


def shared_temp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder common to all xdist workers of this pytest run (and only this run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


# --------------------------------------------------------------------------------------
# The rendered project's own test suite

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
    """The rendered project's pytest in its own environment, and each test case's outcome."""
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


def assert_suite_passes_against_services(
    project: RenderedProject, services: dict[str, str], junit: Path
) -> None:
    """The project's pytest passes with `services` (service_urls()), its integration tests
    included: they must exist and none may skip."""
    result, cases = run_suite(project, junit, env=services)
    if result.returncode != 0:
        pytest.fail(f"with {services}: {report(result)}", pytrace=False)
    integration = [c for c in cases if c.integration]
    assert integration, "the rendered project has no integration tests\n" + report(result)
    skipped = [c.name for c in integration if c.outcome == "skipped"]
    assert not skipped, f"integration tests skipped with {services}: {skipped}"
