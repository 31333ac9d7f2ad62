"""Fixtures shared by the template's tests.

- User Copier settings never leak into renders (COPIER_SETTINGS_PATH -> an empty mapping).
- pytest-copie always renders this repository, whatever directory pytest runs from.
- `rendered_projects`: the default project per python_version, rendered once per worker
  and `uv sync`ed once per pytest run (see tests/projects.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers can be imported as `tests.rendering` (tests/ is a package) or, as the boot
# tests do, as plain `rendering`, `services`, `boot`: put tests/ on the path for the latter.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


from tests.projects import RenderedProjects, shared_temp_root
from tests.rendering import TEMPLATE_ROOT


def pytest_configure(config: pytest.Config) -> None:
    # pytest-copie renders the directory given by --template (default "."), so running
    # pytest from tests/ or anywhere else would render the wrong directory or refuse.
    # Pin it to this repository unless --template was given explicitly.
    args = config.invocation_params.args
    if not any(str(a) == "--template" or str(a).startswith("--template=") for a in args):
        config.option.template = str(TEMPLATE_ROOT)


@pytest.fixture(scope="session", autouse=True)
def isolated_copier_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point Copier at a settings file with no defaults and no trusted repositories.

    A developer's own settings file (defaults for author_name, trust lists, ...) would
    otherwise change what the tests render. The file holds `{}` rather than nothing:
    Copier 9.19 rejects a truly empty settings file.
    """
    settings = tmp_path_factory.mktemp("copier-settings") / "settings.yml"
    settings.write_text("{}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COPIER_SETTINGS_PATH", str(settings))
        yield settings


@pytest.fixture(scope="session")
def rendered_projects(
    tmp_path_factory: pytest.TempPathFactory, isolated_copier_settings: Path
) -> RenderedProjects:
    """Default-answer projects per python_version: rendered per worker, synced once per run."""
    return RenderedProjects(
        local_root=tmp_path_factory.mktemp("rendered"),
        shared_root=shared_temp_root(tmp_path_factory),
    )
