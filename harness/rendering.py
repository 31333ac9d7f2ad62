"""Render the template and prepare rendered projects: the one place tests do that."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import copier

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_ANSWERS: dict[str, object] = {
    "project_name": "My Service",
    "description": "A FastAPI service with Celery workers",
    "author_name": "Test Author",
    "author_email": "author@example.com",
}


def available_python_versions() -> list[str]:
    """The python_version choices whose interpreter exists on this machine."""
    return [v for v in ("3.11", "3.12", "3.13") if _interpreter_runs(f"python{v}")]


@functools.cache
def _interpreter_runs(name: str) -> bool:
    # A pyenv shim exists for every installed version but fails unless that version is
    # enabled (`pyenv global 3.11.7 3.12.1 3.13.0`), so finding it on PATH is not enough.
    if shutil.which(name) is None:
        return False
    try:
        result = subprocess.run([name, "-c", ""], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# uv's --resolution: `highest` is what a user's first `uv sync` of a render gets (no lock
# file is rendered); `lowest-direct` is the lowest version each dependency's bound allows.
NEWEST = "highest"
LOWEST_DIRECT = "lowest-direct"


@dataclass(frozen=True)
class RenderedProject:
    path: Path
    answers: dict[str, object]

    @property
    def package_name(self) -> str:
        return str(self.answers.get("package_name", "my_service"))

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project's own uv environment."""
        return run_in_project(
            ["uv", "run", "--frozen", "--no-sync", *args], self.path, env=env, timeout=timeout
        )

    def sync(self, resolution: str = NEWEST) -> None:
        """Create the project's own environment (lock + install, dev group included)."""
        uv_sync(self.path, resolution=resolution)


def uv_sync(path: Path, timeout: float = 600, resolution: str = NEWEST) -> None:
    """`uv sync` in a rendered project (its dev group included), raising with uv's output.

    The resolution is always named, so a UV_RESOLUTION of the caller's cannot change it.
    """
    result = run_in_project(
        ["uv", "sync", "--quiet", "--resolution", resolution], path, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"uv sync failed in {path}:\n{result.stdout}\n{result.stderr}")


def run_in_project(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command in a rendered project's folder, in `project_env(env)`, output captured."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=project_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_OUTER_SERVICE_VARS = frozenset(
    {"REDIS_URL", "RABBITMQ_URL", "POSTGRES_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
)


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a rendered project's commands: no leakage from ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        # PYTEST_*: our own pytest's (PYTEST_ADDOPTS, PYTEST_XDIST_WORKER, ...) must not
        # reach a nested pytest; service URLs only come in through `extra`.
        if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTEST_"))
        and k not in _OUTER_SERVICE_VARS
    }
    env.pop("PYTHONPATH", None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if extra:
        env.update(extra)
    return env


def render(
    destination: Path,
    template: Path | None = None,
    *,
    vcs_ref: str | None = None,
    **answers: object,
) -> RenderedProject:
    """Render the working tree of the template into destination.

    With `template` (a `snapshot_template()` copy), Copier renders that folder as it is:
    no git clone and no git command per file (see `_without_git_index_sync`), about three
    times as fast; the answers file records no commit. With `template` and `vcs_ref`, the
    template is a git repository rendered at that tag or commit.
    """
    data = {**DEFAULT_ANSWERS, **answers}
    with _without_git_index_sync() if template else contextlib.nullcontext():
        copier.run_copy(
            str(template or TEMPLATE_ROOT),
            destination,
            data=data,
            defaults=True,
            vcs_ref=vcs_ref if template else "HEAD",
            quiet=True,
        )
    return RenderedProject(destination, copier_answers(destination))


@contextlib.contextmanager
def _without_git_index_sync() -> Iterator[None]:
    """Skip Copier's executable-bit sync into the destination's git index.

    For each file it writes, Copier 9.19 runs `git config core.fileMode` in the destination
    (`Worker._sync_git_index_executable_bit`, guarded by `is_git_available()`): a third of
    a render's time, and a no-op unless the destination is inside a git repository with
    core.fileMode=false, which test destinations never are. Nothing else in `copier._main`
    asks `is_git_available()`. If Copier renames it, renders are just slower.
    """
    import copier._main as copier_main

    if not hasattr(copier_main, "is_git_available"):
        yield
        return
    with mock.patch.object(copier_main, "is_git_available", lambda: False):
        yield


# Not part of the template: the repository's own tooling, environments and caches.
_NOT_TEMPLATE = frozenset(
    {
        ".git",
        ".venv",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "tests",
        "harness",
        "bench-results",
    }
)


def snapshot_template(destination: Path) -> Path:
    """Copy the template's working tree (copier.yml, template/, ...) to destination.

    For renders in bulk: Copier renders a folder that is not a git repository directly,
    where it would clone this repository for each render of `vcs_ref="HEAD"`.
    """

    def ignore(folder: str, names: list[str]) -> set[str]:
        at_root = Path(folder) == TEMPLATE_ROOT
        return {n for n in names if n == "__pycache__" or (at_root and n in _NOT_TEMPLATE)}

    shutil.copytree(TEMPLATE_ROOT, destination, ignore=ignore)
    return destination


def copier_answers(project: Path) -> dict[str, object]:
    import yaml

    loaded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return {k: v for k, v in loaded.items() if not k.startswith("_")}
