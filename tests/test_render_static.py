"""The default project, rendered for each python_version, passes static checks.

Nothing here starts a service. Each check is its own test so a failure names the check.
Ruff and mypy run in the rendered project's own environment (its own pinned versions and
configuration, as its CI would run them); hadolint and check-jsonschema come from ours.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.projects import DefaultProject, RenderedProjects, python_version_params

pytestmark = pytest.mark.parametrize("python_version", python_version_params())

# A Jinja delimiter left in the output, except `${{` (GitHub Actions expressions, written
# with {% raw %}) and `${#` (shell string length).
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|(?<!\$)\{#")

EXPECTED_FILES = (
    ".copier-answers.yml",
    ".python-version",
    "pyproject.toml",
    "README.md",
    "Dockerfile",
    "compose.yaml",
    ".env.example",
    ".gitignore",
    ".dockerignore",
    ".github/workflows/ci.yml",
    "src/my_service/__init__.py",
    "src/my_service/config.py",
    "src/my_service/celery_app.py",
    "src/my_service/models.py",
    "src/my_service/main.py",
    "src/my_service/dependencies.py",
    "src/my_service/routers/_shared.py",
    "src/my_service/_internal/__init__.py",
)
EXPECTED_DIRS = (
    "src/my_service/tasks",
    "src/my_service/routers",
    "src/my_service/_internal",
    "tests",
    "tests/integration",
)


@pytest.fixture
def default_project(rendered_projects: RenderedProjects, python_version: str) -> DefaultProject:
    return rendered_projects.get(python_version)


def text_files(project: DefaultProject) -> dict[Path, str]:
    texts = {}
    for rel in project.files:
        try:
            texts[rel] = (project.path / rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def tool(name: str) -> str:
    """A command-line tool installed in the template's own environment."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `uv sync` at the template's root")
    return found


def run_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        command = " ".join(str(a) for a in result.args)
        pytest.fail(
            f"`{command}` exited {result.returncode}\n{result.stdout}\n{result.stderr}".strip(),
            pytrace=False,
        )


# --- what was rendered ----------------------------------------------------------------


def test_expected_files_are_rendered(default_project: DefaultProject) -> None:
    rendered = {str(p) for p in default_project.files}
    missing = [f for f in EXPECTED_FILES if f not in rendered]
    assert not missing, f"missing from the rendered project: {missing}"
    missing_dirs = [d for d in EXPECTED_DIRS if not (default_project.path / d).is_dir()]
    assert not missing_dirs, f"missing folders: {missing_dirs}"


def test_lock_file_is_not_rendered(default_project: DefaultProject) -> None:
    assert Path("uv.lock") not in default_project.files


def test_no_template_suffix_or_jinja_in_names(default_project: DefaultProject) -> None:
    bad = [
        str(p)
        for p in default_project.files
        if p.suffix == ".jinja" or any(d in str(p) for d in ("{{", "{%", "}}"))
    ]
    assert not bad, f"files still named like templates: {bad}"


def test_no_jinja_left_in_text_files(default_project: DefaultProject) -> None:
    leftovers = []
    for rel, text in text_files(default_project).items():
        for lineno, line in enumerate(text.splitlines(), 1):
            if JINJA_LEFTOVER.search(line):
                leftovers.append(f"{rel}:{lineno}: {line.strip()}")
    assert not leftovers, "Jinja delimiters left after rendering:\n" + "\n".join(leftovers)


def test_no_empty_files(default_project: DefaultProject) -> None:
    # PEP 561's py.typed marker is conventionally empty; nothing else should be.
    empty = [
        str(rel)
        for rel in default_project.files
        if rel.name != "py.typed" and (default_project.path / rel).stat().st_size == 0
    ]
    assert not empty, f"empty files rendered: {empty}"


def test_text_files_end_with_one_newline(default_project: DefaultProject) -> None:
    bad = [
        str(rel)
        for rel, text in text_files(default_project).items()
        if text and (not text.endswith("\n") or text.endswith("\n\n"))
    ]
    assert not bad, f"files not ending in exactly one newline: {bad}"


# --- files parse ----------------------------------------------------------------------


def test_toml_files_parse(default_project: DefaultProject) -> None:
    tomls = [p for p in default_project.files if p.suffix == ".toml"]
    assert Path("pyproject.toml") in tomls
    for rel in tomls:
        try:
            tomllib.loads((default_project.path / rel).read_text())
        except tomllib.TOMLDecodeError as exc:
            pytest.fail(f"{rel} is not valid TOML: {exc}")


def test_yaml_files_parse(default_project: DefaultProject) -> None:
    yamls = [p for p in default_project.files if p.suffix in (".yml", ".yaml")]
    assert Path("compose.yaml") in yamls
    for rel in yamls:
        try:
            yaml.safe_load((default_project.path / rel).read_text())
        except yaml.YAMLError as exc:
            pytest.fail(f"{rel} is not valid YAML: {exc}")


# --- linters, in the rendered project's own environment -------------------------------


def test_ruff_check(rendered_projects: RenderedProjects, python_version: str) -> None:
    project = rendered_projects.synced(python_version)
    result = project.run("ruff", "check", "--no-cache", ".")
    assert_ok(result)


def test_ruff_format(rendered_projects: RenderedProjects, python_version: str) -> None:
    project = rendered_projects.synced(python_version)
    result = project.run("ruff", "format", "--check", "--no-cache", ".")
    assert_ok(result)


def test_mypy_strict(rendered_projects: RenderedProjects, python_version: str) -> None:
    project = rendered_projects.synced(python_version)
    # files = ["src", "tests"] comes from the project's own configuration. No cache: other
    # workers may run commands in the same synced project at the same time.
    result = project.run("mypy", "--strict", "--cache-dir=/dev/null")
    assert_ok(result)


# --- container and CI files ------------------------------------------------------------


def test_hadolint(default_project: DefaultProject) -> None:
    result = run_tool(tool("hadolint"), "--no-color", "Dockerfile", cwd=default_project.path)
    assert_ok(result)


def test_compose_matches_compose_spec(default_project: DefaultProject) -> None:
    result = run_tool(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        "compose.yaml",
        cwd=default_project.path,
    )
    assert_ok(result)


def test_ci_workflow_matches_github_schema(default_project: DefaultProject) -> None:
    result = run_tool(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        ".github/workflows/ci.yml",
        cwd=default_project.path,
    )
    assert_ok(result)


# --- python_version reaches every place that names a Python ---------------------------


def test_requires_python(default_project: DefaultProject, python_version: str) -> None:
    pyproject = tomllib.loads((default_project.path / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python_version}"


def test_python_version_file(default_project: DefaultProject, python_version: str) -> None:
    assert (default_project.path / ".python-version").read_text().strip() == python_version


def test_dockerfile_python_image(default_project: DefaultProject, python_version: str) -> None:
    dockerfile = (default_project.path / "Dockerfile").read_text()
    images = re.findall(r"(?im)^\s*FROM\s+(?:--platform=\S+\s+)?(\S*python:\S+)", dockerfile)
    assert images, "no `FROM python:<version>` image in the Dockerfile"
    wrong = [i for i in images if not re.search(rf"python:{re.escape(python_version)}(?![0-9])", i)]
    assert not wrong, f"python images not on {python_version}: {wrong}"


def _values_of(node: Any, key: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found.extend(_values_of(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_values_of(item, key))
    return found


def test_ci_uses_python_version(default_project: DefaultProject, python_version: str) -> None:
    text = (default_project.path / ".github/workflows/ci.yml").read_text()
    workflow = yaml.safe_load(text)
    # python-version: inputs of setup-python / setup-uv, or a matrix axis
    values: list[str] = []
    for value in _values_of(workflow, "python-version"):
        values.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    if values:
        wrong = [v for v in values if v != python_version and "${{" not in v]
        assert not wrong, f"ci.yml names other Python versions: {wrong}"
    else:
        # e.g. `uv python install 3.13` or UV_PYTHON: "3.13"
        assert re.search(rf"(?<![0-9.]){re.escape(python_version)}(?![0-9])", text), (
            f"ci.yml does not name Python {python_version}"
        )
    others = {"3.11", "3.12", "3.13"} - {python_version}
    named = [v for v in others if re.search(rf"(?<![0-9.]){re.escape(v)}(?![0-9])", text)]
    assert not named, f"ci.yml names other Python versions: {named}"
