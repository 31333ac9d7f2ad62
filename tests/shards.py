"""The CI jobs' share of the suite: `uv run pytest -n 2 --shard NAME` runs one shard.

Every test belongs to exactly one shard: `shard_of` tries the rules in order and the last,
`rest`, takes whatever the others leave. `.github/workflows/ci.yml` runs one job per name
in `SHARDS` (tests/test_ci_workflow.py checks both).
"""

from __future__ import annotations

import re

import pytest

from tests.variants import BOOT_VARIANTS, STATIC_MODULE, boot_scope

UPDATE_MODULES = ("tests/test_update.py", "tests/test_update_lifecycle.py")
PYTHON_SHARDS = ("py3.11", "py3.12", "py3.13")
REST = "rest"

SHARDS = (
    "update",
    *(f"boot-{b.id}" for b in BOOT_VARIANTS),
    "static-variants",
    *PYTHON_SHARDS,
    REST,
)

# A python_version in a test id: `[py3.11]`, `[py3.11-default-...]`.
_PYTHON_ID = re.compile(r"[\[-](py3\.\d+)(?=[\]-])")


def shard_of(nodeid: str) -> str:
    """The one shard a test (by its node id, relative to the repository root) runs in."""
    if nodeid.startswith(tuple(m + "::" for m in UPDATE_MODULES)):
        return "update"
    scope = boot_scope(nodeid)
    if scope:
        return f"boot-{scope.removeprefix('boot:')}"
    if nodeid.startswith(STATIC_MODULE + "::"):
        return "static-variants"
    params = "[" + nodeid.partition("[")[2]
    match = _PYTHON_ID.search(params)
    if match and match.group(1) in PYTHON_SHARDS:
        return match.group(1)
    return REST


def add_shard_option(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shard",
        choices=SHARDS,
        default=None,
        help="run only this CI job's share of the suite (tests/shards.py)",
    )


def deselect_other_shards(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --shard, keep only that shard's tests (reported as deselected)."""
    shard = config.getoption("shard")
    if shard is None:
        return
    kept = [item for item in items if shard_of(item.nodeid) == shard]
    deselected = [item for item in items if shard_of(item.nodeid) != shard]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
