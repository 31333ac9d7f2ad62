"""Two tagged versions of the template in a throwaway git repository, for `copier update` tests.

2.0.0 is this template's working tree. 1.0.0 differs from it as an older release would: a
line at the top of the README, a line at the end of a router, of the two registration files
(`celery_app.py`, `routers/__init__.py`) and of `compose.yaml`, and a module that 2.0.0
drops. Tags are plain `X.Y.Z`, as the template's own releases are (CONTRIBUTING.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import copier

from harness.rendering import render, snapshot_template

OLD, NEW = "1.0.0", "2.0.0"
PACKAGE_DIR = "template/src/{{package_name}}"
OLD_README_LINE = "This service was rendered from version 1.0.0 of the template.\n"
OLD_MODULE_LINE = "# A line that version 2.0.0 removes.\n"
RETIRED_MODULE = "src/my_service/retired.py"
# Template files whose 1.0.0 ends with OLD_MODULE_LINE, and where they render.
CHANGED_AT_THE_END = {
    f"{PACKAGE_DIR}/routers/health.py": "src/my_service/routers/health.py",
    f"{PACKAGE_DIR}/celery_app.py.jinja": "src/my_service/celery_app.py",
    f"{PACKAGE_DIR}/routers/__init__.py": "src/my_service/routers/__init__.py",
    "template/compose.yaml.jinja": "compose.yaml",
}
# What the after-update message prints, and what it tells the owner to run.
CONFLICT_GREP = ["git", "grep", "-nE", "^(<<<<<<<|>>>>>>>) "]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def build_template_versions(destination: Path) -> Path:
    """The template repository with tags 1.0.0 and 2.0.0 (see the module docstring)."""
    repo = snapshot_template(destination)
    readme = repo / "template/README.md.jinja"
    retired = repo / PACKAGE_DIR / "retired.py"
    current = {path: (repo / path).read_text() for path in CHANGED_AT_THE_END}

    git(repo, "init", "--quiet", "--initial-branch=main")
    current_readme = readme.read_text()
    readme.write_text(OLD_README_LINE + current_readme)
    for path, text in current.items():
        (repo / path).write_text(text + OLD_MODULE_LINE)
    retired.write_text('"""A module that version 2.0.0 drops."""\n')
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", OLD)
    git(repo, "tag", OLD)

    readme.write_text(current_readme)
    for path, text in current.items():
        (repo / path).write_text(text)
    retired.unlink()
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", NEW)
    git(repo, "tag", NEW)
    return repo


def copy(template: Path, destination: Path, version: str, **answers: object) -> Path:
    return render(destination, template, vcs_ref=version, **answers).path


def update(project: Path, answers: dict[str, object] | None = None) -> None:
    """`copier update --defaults` to 2.0.0, with `--data` for each answer given."""
    copier.run_update(
        project, data=answers or {}, defaults=True, overwrite=True, vcs_ref=NEW, quiet=True
    )


def update_command(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`copier update --defaults --vcs-ref 2.0.0 [options]` as a user runs it: its exit code
    and what it prints (the after-update message goes to stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "copier", "update", "--defaults", "--vcs-ref", NEW, *options],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def committed(project: Path, message: str) -> Path:
    if not (project / ".git").exists():
        git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", message)
    return project


def files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def conflict_lines(project: Path) -> list[str]:
    """What the documented `git grep` finds: the marker lines left in tracked files."""
    result = subprocess.run(CONFLICT_GREP, cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1: nothing found
    return result.stdout.splitlines()
