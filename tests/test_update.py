"""`copier update`: a service rendered from an older version of the template takes the newer
one and keeps its owner's edits; an answer can be changed on update; a bad one changes nothing.

The two versions are commits of a throwaway git repository, tagged 1.0.0 and 2.0.0: 2.0.0 is
this template's working tree, and 1.0.0 differs from it as an older release would (a line at
the top of the README, a line in a module, a module that 2.0.0 drops). "As a fresh render"
means byte for byte the files of `copier copy` at 2.0.0 with the same answers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import copier
import pytest
import yaml

from tests.rendering import copier_answers, render, snapshot_template

OLD, NEW = "1.0.0", "2.0.0"
PACKAGE_DIR = "template/src/{{package_name}}"
OLD_README_LINE = "This service was rendered from version 1.0.0 of the template.\n"
OLD_MODULE_LINE = "# A line that version 2.0.0 removes.\n"
RETIRED_MODULE = "src/my_service/retired.py"

OWNER_README_SECTION = "\n## Our team's notes\n\nOn-call rota: see the wiki.\n"
OWNER_SETTING = "    # Ours: the default page size of our own endpoints.\n    page_size: int = 50\n"
OWNER_MODULE = "src/my_service/ours.py"
CONFIG = "src/my_service/config.py"


def with_owner_setting(config: str) -> str:
    """The service's settings with a field of the owner's own, above the Celery ones."""
    edited = config.replace("\n    # Celery\n", f"\n{OWNER_SETTING}\n    # Celery\n", 1)
    assert edited != config, "config.py no longer has a '# Celery' section"
    return edited


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = snapshot_template(tmp_path_factory.mktemp("template-repo") / "template-repo")
    readme = repo / "template/README.md.jinja"
    health = repo / PACKAGE_DIR / "routers/health.py"
    retired = repo / PACKAGE_DIR / "retired.py"
    current_readme, current_health = readme.read_text(), health.read_text()

    git(repo, "init", "--quiet", "--initial-branch=main")
    readme.write_text(OLD_README_LINE + current_readme)
    health.write_text(current_health + OLD_MODULE_LINE)
    retired.write_text('"""A module that version 2.0.0 drops."""\n')
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", OLD)
    git(repo, "tag", OLD)

    readme.write_text(current_readme)
    health.write_text(current_health)
    retired.unlink()
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", NEW)
    git(repo, "tag", NEW)
    return repo


def copy(template: Path, destination: Path, version: str, **answers: object) -> Path:
    return render(destination, template, vcs_ref=version, **answers).path


def update(project: Path, answers: dict[str, object] | None = None) -> None:
    """`copier update --trust --defaults` to 2.0.0, with `--data` for each answer given."""
    copier.run_update(
        project,
        data=answers or {},
        defaults=True,
        overwrite=True,
        unsafe=True,
        vcs_ref=NEW,
        quiet=True,
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


def test_versions_differ_as_the_tests_expect(template_repo: Path, tmp_path: Path) -> None:
    old = files(copy(template_repo, tmp_path / "old", OLD))
    new = files(copy(template_repo, tmp_path / "new", NEW))
    assert old["README.md"].decode().startswith(OLD_README_LINE)
    assert not new["README.md"].decode().startswith(OLD_README_LINE)
    assert old["src/my_service/routers/health.py"].decode().endswith(OLD_MODULE_LINE)
    assert RETIRED_MODULE in old
    assert RETIRED_MODULE not in new
    assert old.keys() - new.keys() == {RETIRED_MODULE}


def test_update_brings_the_new_version_and_keeps_the_owners_edits(
    template_repo: Path, tmp_path: Path
) -> None:
    project = committed(copy(template_repo, tmp_path / "service", OLD), "Rendered 1.0.0")
    with (project / "README.md").open("a") as readme:
        readme.write(OWNER_README_SECTION)
    config = project / CONFIG
    config.write_text(with_owner_setting(config.read_text()))
    (project / OWNER_MODULE).write_text('"""Our own module."""\n')
    committed(project, "Our edits")

    update(project)

    expected = files(copy(template_repo, tmp_path / "fresh", NEW))
    expected["README.md"] += OWNER_README_SECTION.encode()
    expected[CONFIG] = with_owner_setting(expected[CONFIG].decode()).encode()
    expected[OWNER_MODULE] = b'"""Our own module."""\n'
    assert files(project) == expected
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert recorded["_commit"] == NEW


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"use_sse": False, "use_flower": False}, id="drop-sse-and-flower"),
        pytest.param({"broker": "rabbitmq", "ci": "gitlab"}, id="rabbitmq-gitlab"),
        # use_beat was answered false; beat is required with PostgreSQL, and its default says so.
        pytest.param({"result_backend": "postgresql"}, id="postgresql"),
    ],
)
def test_an_answer_changed_on_update_renders_as_a_fresh_copy(
    template_repo: Path, tmp_path: Path, changed: dict[str, object]
) -> None:
    project = committed(copy(template_repo, tmp_path / "service", NEW), "Rendered 2.0.0")

    update(project, changed)

    answers = copier_answers(project)
    assert {name: answers[name] for name in changed} == changed
    fresh = copy(template_repo, tmp_path / "fresh", NEW, **changed)
    assert files(project) == files(fresh)


def test_a_bad_answer_on_update_is_refused_and_changes_nothing(
    template_repo: Path, tmp_path: Path
) -> None:
    project = committed(copy(template_repo, tmp_path / "service", OLD), "Rendered 1.0.0")
    before = files(project)

    with pytest.raises(ValueError, match="use_beat"):
        update(project, {"result_backend": "postgresql", "use_beat": False})

    assert files(project) == before
    assert git(project, "status", "--porcelain") == ""
