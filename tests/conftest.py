"""Fixtures shared by the template's tests.

- User Copier settings never leak into renders (COPIER_SETTINGS_PATH -> an empty mapping).
- pytest-copie always renders this repository, whatever directory pytest runs from.
- `rendered_projects`: the default project per python_version, rendered once per worker
  and `uv sync`ed once per pytest run (see tests/projects.py).
- `variant_renders`, `shared_results`: every option combination rendered once per run,
  slow checks run once per distinct input (see tests/matrix.py).
- Under xdist (`-n 2`), the boot tests of one variant go to one worker as one unit, and so
  do the static tests of variants differing only in ci (see `pytest_xdist_make_scheduler`);
  the rest are spread test by test, as `--dist load` does. Boot tests are collected first.
- The booted stacks (tests/stack.py): `boot`, `stack`, `worker`, `beat`, one stack per
  booted variant and worker, shared by the boot modules (tests/test_boot_*.py), stopped
  after the worker's last test of its variant.
- `--shard NAME` runs one CI job's share of the suite (tests/shards.py).
- A timing summary at the end: time per module, per booted variant, per static tool.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ServiceProcess
from harness.rendering import TEMPLATE_ROOT
from tests.matrix import SharedResults, VariantRenders
from tests.projects import RenderedProjects, shared_temp_root
from tests.shards import add_shard_option, deselect_other_shards
from tests.stack import BootedStacks, Stack
from tests.updating import build_template_versions
from tests.variants import BOOT_MODULES, BOOT_VARIANTS, BootVariant, boot_scope, static_scope


def pytest_addoption(parser: pytest.Parser) -> None:
    add_shard_option(parser)


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


@pytest.fixture(scope="session")
def variant_renders(
    tmp_path_factory: pytest.TempPathFactory, isolated_copier_settings: Path
) -> VariantRenders:
    """Every variant rendered once per run (shared by the workers) and the union env."""
    return VariantRenders(shared_temp_root(tmp_path_factory))


@pytest.fixture(scope="session")
def shared_results(variant_renders: VariantRenders) -> SharedResults:
    """Check results shared by variants with the same input, once per run."""
    return SharedResults(variant_renders.shared_root / "static-checks")


# --------------------------------------------------------------------------------------
# xdist: one worker per booted variant


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Only the tests of `--shard` if given (a CI job's share, tests/shards.py). Boot tests
    first, grouped by variant (a stable sort: within a variant, the modules in BOOT_MODULES'
    order, each in the order of its file).
    They are the longest units of work: started first, they balance the workers best;
    grouped, each variant's stack boots once."""
    deselect_other_shards(config, items)
    order = {f"boot:{b.id}": i for i, b in enumerate(BOOT_VARIANTS)}
    modules = {module: i for i, module in enumerate(BOOT_MODULES)}

    def key(item: pytest.Item) -> tuple[int, int]:
        scope = boot_scope(item.nodeid)
        if scope is None:
            return (len(order), 0)
        return (order[scope], modules[item.nodeid.partition("::")[0]])

    items.sort(key=key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist load` (what `-n 2` means), but some tests go to one worker together.

    - A booted variant's tests share one stack (API, worker, ...) and the first must run
      before the worker starts; split over two workers, each would boot its own.
    - The static tests of variants that differ only in ci share their ruff and mypy runs;
      split, one worker would wait for the other's.

    `xdist_group` marks with `--dist loadgroup` would do the first, but with pytest 9.2 and
    pytest-xdist 3.8 they are silently ignored (pytest-xdist#1386), so units come from the
    test ids (tests/variants.py). Every other test is its own unit, as with `load`. Units go
    out in collection order (boot tests first), not largest first.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class VariantScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return boot_scope(nodeid) or static_scope(nodeid) or nodeid

    config.option.loadscopereorder = False
    return VariantScheduling(config, log)


# --------------------------------------------------------------------------------------
# Timing summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Time spent per module, per booted variant and per static check tool.

    Sums of test durations (setup + call + teardown) over all workers: with `-n 2` the
    wall-clock time is about half. Static tools' times come from the tests' recorded
    `static_timing` properties (only the run that did the work records it).
    """
    modules: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    boots: dict[str, float] = defaultdict(float)
    tools: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", None)
            duration = getattr(report, "duration", None)
            if not nodeid or duration is None or not hasattr(report, "when"):
                continue
            module = nodeid.split("::")[0]
            modules[module][1] += duration
            if report.when == "call":
                modules[module][0] += 1
                for name, value in getattr(report, "user_properties", ()):
                    if name == "static_timing":
                        kind, seconds = value
                        tools[kind][0] += 1
                        tools[kind][1] += seconds
            scope = boot_scope(nodeid)
            if scope:
                boots[scope] += duration
    if not modules:
        return
    write = terminalreporter.write_line
    terminalreporter.section("timing (sums over workers)", sep="-")
    for module, (count, seconds) in sorted(modules.items(), key=lambda m: -m[1][1]):
        write(f"{seconds:8.1f} s  {int(count):5d} tests  {module}")
    for scope, seconds in sorted(boots.items()):
        write(f"{seconds:8.1f} s  booted variant {scope.removeprefix('boot:')}")
    for kind, (count, seconds) in sorted(tools.items()):
        write(f"{seconds:8.1f} s  {int(count):5d} runs   static check: {kind}")


# --------------------------------------------------------------------------------------
# Booted stacks: one per variant and worker, whichever boot modules its tests are in

_BOOTED_STACKS = pytest.StashKey[BootedStacks]()


@pytest.fixture(scope="session")
def boot(request: pytest.FixtureRequest) -> BootVariant:
    """The booted variant (parametrized indirectly, at session scope, by `@each`)."""
    assert isinstance(request.param, BootVariant)
    return request.param


@pytest.fixture(scope="session")
def booted_stacks(
    request: pytest.FixtureRequest,
    rendered_projects: RenderedProjects,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BootedStacks]:
    stacks = BootedStacks(rendered_projects, tmp_path_factory)
    request.config.stash[_BOOTED_STACKS] = stacks
    try:
        yield stacks
    finally:
        stacks.close()


@pytest.fixture
def stack(boot: BootVariant, booted_stacks: BootedStacks) -> Stack:
    """The variant's stack: everything but the worker and beat, started and ready."""
    return booted_stacks.stack(boot)


@pytest.fixture
def worker(stack: Stack, booted_stacks: BootedStacks) -> ServiceProcess:
    """The stack's Celery worker, started by the first test that needs it."""
    return booted_stacks.worker(stack)


@pytest.fixture
def beat(stack: Stack, booted_stacks: BootedStacks) -> ServiceProcess:
    """celery beat (and the worker), started by the first test that needs it."""
    return booted_stacks.beat(stack)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a worker's last test of a booted variant, stop its stack: the tests that follow
    (another variant's, or static ones) run without its processes."""
    scope = boot_scope(item.nodeid)
    if scope is None or (nextitem is not None and boot_scope(nextitem.nodeid) == scope):
        return
    stacks = item.config.stash.get(_BOOTED_STACKS, None)
    if stacks is not None:
        stacks.close()


# --------------------------------------------------------------------------------------
# Update tests


@pytest.fixture(scope="session")
def template_versions(
    tmp_path_factory: pytest.TempPathFactory, isolated_copier_settings: Path
) -> Path:
    """A throwaway template repository tagged 1.0.0 and 2.0.0 (tests/updating.py)."""
    return build_template_versions(tmp_path_factory.mktemp("template-versions") / "template")
