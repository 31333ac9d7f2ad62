"""Default-variant projects shared by the static and service-suite tests.

Rendering is cheap; `uv sync` in a rendered project is not. Each pytest session (each
xdist worker) renders the default answers once per python_version and syncs each project
at most once. Tests that use a python_version carry the xdist group `python-<version>`
(`python_version_params()`), so with `pytest -n 2 --dist loadgroup` every test of one
version runs on one worker and the sync is not repeated on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.rendering import RenderedProject, available_python_versions, render
from tests.services import services_required

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")  # the choices of copier.yml's python_version


def python_version_params() -> list[object]:
    """Every python_version choice, grouped per version for xdist (see module doc)."""
    return [
        pytest.param(v, id=f"py{v}", marks=pytest.mark.xdist_group(f"python-{v}"))
        for v in PYTHON_VERSIONS
    ]


def require_python(version: str) -> None:
    """Skip (developer machine) or fail (TEMPLATE_REQUIRE_SERVICES=1) without that Python."""
    if version in available_python_versions():
        return
    reason = (
        f"python{version} is not available on this machine "
        f"(with pyenv: `pyenv global 3.11.7 3.12.1 3.13.0`)"
    )
    if services_required():
        pytest.fail(f"{reason}; TEMPLATE_REQUIRE_SERVICES=1, so this is a failure", pytrace=False)
    pytest.skip(reason)


@dataclass
class DefaultProject:
    project: RenderedProject
    python_version: str
    # Files as rendered, relative to the project root, before any command ran in it
    # (uv sync, pytest, mypy add .venv, uv.lock and caches afterwards).
    files: tuple[Path, ...]
    _sync_error: str | None = None
    _synced: bool = False

    @property
    def path(self) -> Path:
        return self.project.path

    def synced(self) -> RenderedProject:
        """The project with its own environment created (`uv sync`), once."""
        if self._sync_error is not None:
            pytest.fail(f"(earlier attempt) {self._sync_error}", pytrace=False)
        if not self._synced:
            try:
                self.project.sync()
            except Exception as exc:
                self._sync_error = str(exc)
                pytest.fail(self._sync_error, pytrace=False)
            self._synced = True
        return self.project


@dataclass
class RenderedProjects:
    root: Path
    _projects: dict[str, DefaultProject] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)

    def get(self, python_version: str) -> DefaultProject:
        """The default project for python_version, rendered on first use."""
        require_python(python_version)
        if python_version in self._errors:
            pytest.fail(f"(earlier attempt) {self._errors[python_version]}", pytrace=False)
        if python_version not in self._projects:
            destination = self.root / f"py{python_version}" / "my-service"
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

    def synced(self, python_version: str) -> RenderedProject:
        return self.get(python_version).synced()
