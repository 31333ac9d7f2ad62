"""The template repository's own code (tests, bench) passes the checks it asks of services."""

import subprocess
import sys

import pytest

from tests.rendering import TEMPLATE_ROOT


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
