"""pytest-copie renders this template from any working directory (conftest pins the path)."""

from __future__ import annotations

from typing import Any

import yaml


def test_copie_renders_the_template_with_defaults(copie: Any) -> None:
    result = copie.copy(extra_answers={"author_email": "author@example.com"}, vcs_ref="HEAD")
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    answers = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "my-service"
    assert answers["package_name"] == "my_service"
    assert answers["python_version"] == "3.13"
