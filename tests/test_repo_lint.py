"""The template repository's own code (tests, bench) passes the checks it asks of services."""

import re
import subprocess
import sys

import pytest

from harness.rendering import TEMPLATE_ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],  # files and settings: pyproject.toml
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_repository_code_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


DOCS = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "bench/PERFORMANCE.md"]


def test_readme_is_short_and_gives_the_command_ci_runs() -> None:
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    assert len(readme.encode()) < 10_000, "README.md is for the template's users: keep it short"
    ci_command = (TEMPLATE_ROOT / ".ci/run").read_text().rstrip().splitlines()[-1]
    assert ci_command == "exec uv run pytest -n 2"
    assert "\n   uv run pytest -n 2\n" in readme
    assert "\n   bash .ci/run\n" in readme


@pytest.mark.parametrize("doc", DOCS)
def test_docs_name_only_files_that_exist(doc: str) -> None:
    """Every Markdown file a doc names or links to, as a path from the repository's root."""
    text = (TEMPLATE_ROOT / doc).read_text()
    named = set(re.findall(r"[\w./-]+\.md\b", text))
    missing = sorted(name for name in named if not (TEMPLATE_ROOT / name).is_file())
    assert not missing, f"{doc} names files that don't exist: {missing}"
