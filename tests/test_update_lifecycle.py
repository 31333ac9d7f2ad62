"""`copier update` as an owner lives it, between the tags 1.0.0 and 2.0.0 of a throwaway
template repository (tests/updating.py), run as the `copier` command a user types.

- An owner who added a task, an endpoint and a test the documented way (new modules in
  `tasks/` and `routers/`, no list edited), added a dependency with `uv add` and deleted a
  template file, updates with an option flipped: the command exits 0 and prints how to find
  conflicts, there are none, and the project passes its README checks after `uv sync`.
- Where the owner and the template changed the same lines, the conflict is reported: the
  documented `git grep` and `git status` find it, and the rendered CI fails on it (also on the
  `.rej` files of `--conflict rej`, which take the owner's edit out of the file silently).
"""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.rendering import RenderedProject, run_in_project, uv_sync
from tests.updating import (
    CONFLICT_GREP,
    NEW,
    OLD,
    OLD_README_LINE,
    committed,
    conflict_lines,
    copy,
    git,
    update_command,
)

OWNER_TASK = '''"""Our greetings."""

from ..celery_app import celery_app


@celery_app.task
def greet(name: str) -> str:
    return f"Hello, {name}!"
'''
OWNER_ROUTER = '''"""Our greetings endpoint."""

from fastapi import APIRouter, status

from ..dependencies import Submitter
from ..models import TaskAccepted
from ..tasks.greetings import greet
from ._shared import queued

router = APIRouter(prefix="/api", tags=["greetings"])


@router.post("/greetings/{name}", status_code=status.HTTP_202_ACCEPTED)
async def submit_greeting(name: str, submitter: Submitter) -> TaskAccepted:
    task_id = await submitter.submit(greet.s(name))
    return queued(task_id, "Greeting")
'''
OWNER_TEST = '''"""Our greeting, submitted through its endpoint and run by a worker."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.usefixtures("worker")


def test_greeting(client: TestClient, wait_for_task: Callable[..., dict[str, Any]]) -> None:
    response = client.post("/api/greetings/Ada", headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    body = wait_for_task(response.json()["task_id"])
    assert body["status"] == "success", body
    assert body["result"] == "Hello, Ada!"
'''
OWNER_FILES = {
    "src/my_service/tasks/greetings.py": OWNER_TASK,
    "src/my_service/routers/greetings.py": OWNER_ROUTER,
    "tests/test_greetings.py": OWNER_TEST,
}
OWNER_DEPENDENCY = "tenacity>=9"
OWNER_README_LINE = "Our service, from version 1.0.0.\n"
DELETED_BY_OWNER = "compose.yaml"  # changed by 2.0.0 too
WORKER_TASKS = (
    "from my_service.celery_app import celery_app\n"
    "celery_app.loader.import_default_modules()\n"  # what a worker imports at start
    "print('\\n'.join(celery_app.tasks))\n"
)


def test_owner_code_dependency_and_deletion_survive_an_update_that_flips_an_option(
    template_versions: Path, tmp_path: Path
) -> None:
    project = committed(copy(template_versions, tmp_path / "service", OLD), "Rendered 1.0.0")
    for path, text in OWNER_FILES.items():
        (project / path).write_text(text)
    added = run_in_project(["uv", "add", "--frozen", OWNER_DEPENDENCY], project)
    assert added.returncode == 0, added.stderr
    (project / DELETED_BY_OWNER).unlink()
    committed(project, "Our greetings, tenacity, no Compose")

    result = update_command(project, "--data", "use_flower=false")

    assert result.returncode == 0, result.stderr
    assert "UU (or AA) marks a file with conflicts" in result.stderr
    assert " ".join(CONFLICT_GREP[:3]) in result.stderr
    assert "uv sync && uv run pytest" in result.stderr
    assert conflict_lines(project) == []
    assert not any(
        line[:2] in ("UU", "AA") for line in git(project, "status", "--short").splitlines()
    )
    assert not list(project.rglob("*.rej"))
    for path, text in OWNER_FILES.items():
        assert (project / path).read_text() == text, path
    assert not (project / DELETED_BY_OWNER).exists()
    assert not (project / "flowerconfig.py").exists()
    pyproject = (project / "pyproject.toml").read_text()
    assert f'"{OWNER_DEPENDENCY}"' in pyproject
    assert "flower" not in pyproject
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_commit"], answers["use_flower"]) == (NEW, False)

    # The README's checks, on a real `uv sync` (which resolves tenacity and drops flower).
    # .env as the README makes it: .env.example with its empty secrets filled in.
    env_example = (project / ".env.example").read_text()
    (project / ".env").write_text(
        re.sub(
            r"(?m)^(API_KEYS|WEBHOOK_SECRET)=$",
            lambda empty: empty[0] + secrets.token_urlsafe(32),
            env_example,
        )
    )
    uv_sync(project)
    service = RenderedProject(project, answers)
    for command in (
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["pytest", "-p", "no:cacheprovider"],
        ["python", "-c", "import tenacity"],
    ):
        checked = service.run(*command)
        assert checked.returncode == 0, f"{command}:\n{checked.stdout}\n{checked.stderr}"
    worker_tasks = service.run("python", "-c", WORKER_TASKS)
    assert worker_tasks.returncode == 0, worker_tasks.stderr
    assert "my_service.tasks.greetings.greet" in worker_tasks.stdout.split()


def conflicting_project(template_versions: Path, destination: Path, ci: str) -> Path:
    """A 1.0.0 project whose owner rewrote the README line that 2.0.0 removes."""
    project = copy(template_versions, destination, OLD, ci=ci)
    readme = project / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace(OLD_README_LINE, OWNER_README_LINE, 1))
    return committed(project, "Rendered 1.0.0, README line reworded")


def ci_conflict_check(project: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """Run the rendered CI's conflict check (the GitHub step or the GitLab job) with bash."""
    if ci == "github":
        workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
        (script,) = [
            step["run"]
            for step in workflow["jobs"]["lint"]["steps"]
            if step.get("name") == "No conflicts left by copier update"
        ]
    else:
        pipeline = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
        script = "\n".join(pipeline["conflicts"]["script"])
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_a_conflict_is_reported_and_fails_the_rendered_ci(
    template_versions: Path, tmp_path: Path, ci: str
) -> None:
    project = conflicting_project(template_versions, tmp_path / "service", ci)
    assert ci_conflict_check(project, ci).returncode == 0  # a clean project passes

    result = update_command(project)

    assert result.returncode == 0, result.stderr  # Copier exits 0 on conflicts...
    assert " ".join(CONFLICT_GREP[:3]) in result.stderr  # ...and says how to find them
    found = conflict_lines(project)
    assert found == ["README.md:1:<<<<<<< before updating", "README.md:4:>>>>>>> after updating"]
    assert "UU README.md" in git(project, "status", "--short").splitlines()
    failed = ci_conflict_check(project, ci)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "README.md:1:<<<<<<< before updating" in failed.stdout


def test_conflict_rej_keeps_the_owners_file_and_only_ci_notices(
    template_versions: Path, tmp_path: Path
) -> None:
    """What the README warns about: the owner's edit silently leaves the file for a .rej."""
    project = conflicting_project(template_versions, tmp_path / "service", "github")

    result = update_command(project, "--conflict", "rej")

    assert result.returncode == 0, result.stderr
    assert "git ls-files --others '*.rej'" in result.stderr
    readme = (project / "README.md").read_text()
    assert OWNER_README_LINE not in readme
    assert not readme.startswith(OLD_README_LINE)  # the template's 2.0.0, markers-free
    assert conflict_lines(project) == []
    assert f"+{OWNER_README_LINE}" in (project / "README.md.rej").read_text()
    git(project, "add", "--all")  # an owner who commits without reading the .rej files
    failed = ci_conflict_check(project, "github")
    assert failed.returncode == 1
    assert "README.md.rej" in failed.stdout
