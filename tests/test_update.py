"""`copier update`: a service rendered from an older version of the template takes the newer
one and keeps its owner's edits; an answer can be changed on update; a bad one changes nothing.

The two versions are tags of a throwaway git repository (`template_versions`, built by
tests/updating.py): 2.0.0 is this template's working tree, and 1.0.0 differs from it as an
older release would (a line at the top of the README, a line at the end of some files, a
module that 2.0.0 drops). "As a fresh render"
means byte for byte the files of `copier copy` at 2.0.0 with the same answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.rendering import copier_answers
from tests.updating import (
    CHANGED_AT_THE_END,
    NEW,
    OLD,
    OLD_MODULE_LINE,
    OLD_README_LINE,
    RETIRED_MODULE,
    committed,
    copy,
    files,
    git,
    update,
)

OWNER_README_SECTION = "\n## Our team's notes\n\nOn-call rota: see the wiki.\n"
OWNER_SETTING = "    # Ours: the default page size of our own endpoints.\n    page_size: int = 50\n"
OWNER_MODULE = "src/my_service/ours.py"
CONFIG = "src/my_service/config.py"


def with_owner_setting(config: str) -> str:
    """The service's settings with a field of the owner's own, above the Celery ones."""
    edited = config.replace("\n    # Celery\n", f"\n{OWNER_SETTING}\n    # Celery\n", 1)
    assert edited != config, "config.py no longer has a '# Celery' section"
    return edited


def test_versions_differ_as_the_tests_expect(template_versions: Path, tmp_path: Path) -> None:
    old = files(copy(template_versions, tmp_path / "old", OLD))
    new = files(copy(template_versions, tmp_path / "new", NEW))
    assert old["README.md"].decode().startswith(OLD_README_LINE)
    assert not new["README.md"].decode().startswith(OLD_README_LINE)
    for rendered in CHANGED_AT_THE_END.values():
        assert old[rendered].decode().endswith(OLD_MODULE_LINE), rendered
        assert not new[rendered].decode().endswith(OLD_MODULE_LINE), rendered
    assert RETIRED_MODULE in old
    assert RETIRED_MODULE not in new
    assert old.keys() - new.keys() == {RETIRED_MODULE}


def test_update_brings_the_new_version_and_keeps_the_owners_edits(
    template_versions: Path, tmp_path: Path
) -> None:
    project = committed(copy(template_versions, tmp_path / "service", OLD), "Rendered 1.0.0")
    with (project / "README.md").open("a") as readme:
        readme.write(OWNER_README_SECTION)
    config = project / CONFIG
    config.write_text(with_owner_setting(config.read_text()))
    (project / OWNER_MODULE).write_text('"""Our own module."""\n')
    committed(project, "Our edits")

    update(project)

    expected = files(copy(template_versions, tmp_path / "fresh", NEW))
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
    template_versions: Path, tmp_path: Path, changed: dict[str, object]
) -> None:
    project = committed(copy(template_versions, tmp_path / "service", NEW), "Rendered 2.0.0")

    update(project, changed)

    answers = copier_answers(project)
    assert {name: answers[name] for name in changed} == changed
    fresh = copy(template_versions, tmp_path / "fresh", NEW, **changed)
    assert files(project) == files(fresh)


def test_a_bad_answer_on_update_is_refused_and_changes_nothing(
    template_versions: Path, tmp_path: Path
) -> None:
    project = committed(copy(template_versions, tmp_path / "service", OLD), "Rendered 1.0.0")
    before = files(project)

    with pytest.raises(ValueError, match="use_beat"):
        update(project, {"result_backend": "postgresql", "use_beat": False})

    assert files(project) == before
    assert git(project, "status", "--porcelain") == ""
