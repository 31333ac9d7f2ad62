"""Every variant rendered once per run, and slow checks run once per distinct file tree.

Shared by all xdist workers of a run through the run's common temporary folder and file
locks (the scheme of tests/projects.py):

- `VariantRenders.get(variant)` renders a variant once per run (from one snapshot of the
  template's working tree), into a folder no command writes to.
- `VariantRenders.union_env()` is one environment holding every variant's dependencies
  (their union, `uv sync`ed once per run): ruff and mypy for all variants run there,
  mypy with a cache folder per xdist worker, so only what differs is checked again.
- `SharedResults.once(kind, key, run)` runs a check once per run for a content key
  (a hash of the files the check reads) and hands its result to every variant with the
  same key: ci does not change Python files, use_flower does not change the Dockerfile's
  checks beyond one line, and so on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.rendering import render, run_in_project, snapshot_template, uv_sync
from tests.projects import locked, prepare_once
from tests.variants import BROKERS, FLAGS, RESULT_BACKENDS, Variant

DEFAULT_PYTHON = "3.13"  # copier.yml's default python_version: the one variants use


@dataclass(frozen=True)
class VariantTree:
    """A variant exactly as Copier wrote it."""

    variant: Variant
    path: Path
    files: tuple[Path, ...]  # relative to path

    def has(self, rel: str) -> bool:
        return Path(rel) in self.files

    def read(self, rel: str | Path) -> str:
        return (self.path / rel).read_text(encoding="utf-8")

    def texts(self, *, answers: bool = True) -> dict[Path, str]:
        """Every text file; without the answers file (which names every option) if asked."""
        found = {}
        for rel in self.files:
            if not answers and rel.name == ".copier-answers.yml":
                continue
            try:
                found[rel] = self.read(rel)
            except UnicodeDecodeError:
                continue
        return found

    def pyproject(self) -> dict[str, object]:
        return tomllib.loads(self.read("pyproject.toml"))

    def content_key(self, *rels: str | Path, extra: object = None) -> str:
        """A hash of the named files (missing ones count as missing) and `extra`."""
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
        for rel in sorted(str(r) for r in rels):
            digest.update(rel.encode() + b"\0")
            path = self.path / rel
            digest.update(path.read_bytes() if path.is_file() else b"<missing>")
            digest.update(b"\0")
        return digest.hexdigest()[:20]

    def python_key(self) -> str:
        """What ruff and mypy see: every Python file and pyproject's [tool] tables."""
        py = [rel for rel in self.files if rel.suffix == ".py"]
        return self.content_key(*py, extra=self.pyproject().get("tool"))


@dataclass(frozen=True)
class CheckResult:
    command: str
    cwd: str
    returncode: int
    output: str
    seconds: float
    ran_here: bool = False  # False: another variant (or worker) with the same key ran it

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_command(args: list[str], cwd: Path, timeout: float = 600) -> CheckResult:
    started = time.monotonic()
    result = run_in_project(args, cwd, timeout=timeout)
    return CheckResult(
        command=" ".join(args),
        cwd=str(cwd),
        returncode=result.returncode,
        output=f"{result.stdout}\n{result.stderr}".strip(),
        seconds=time.monotonic() - started,
    )


@dataclass
class SharedResults:
    """Results of checks, computed once per run per (kind, key) by whichever worker asks first."""

    root: Path

    def once(self, kind: str, key: str, run: Callable[[], CheckResult]) -> CheckResult:
        stored = self.root / f"{kind}-{key}.json"
        with locked(self.root / f"{kind}-{key}.lock"):
            if stored.exists():
                return CheckResult(**json.loads(stored.read_text()))
            result = run()
            stored.write_text(json.dumps(asdict(result)))
        return CheckResult(**{**asdict(result), "ran_here": True})


@dataclass
class UnionEnv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def tool(self, name: str) -> str:
        return str(self.root / ".venv" / "bin" / name)

    def requirement_names(self) -> set[str]:
        loaded = tomllib.loads((self.root / "pyproject.toml").read_text())
        reqs = loaded["project"]["dependencies"] + loaded["dependency-groups"]["dev"]
        return {requirement_name(r) for r in reqs}

    def missing(self, requirements: list[str]) -> set[str]:
        """Those of `requirements` this environment lacks (a package, or one of its extras)."""
        have: dict[str, set[str]] = {}
        for name in self.requirement_names():
            base, _, extras = name.partition("[")
            have.setdefault(base, set()).update(e for e in extras.rstrip("]").split(",") if e)
        lacking = set()
        for requirement in requirements:
            name = requirement_name(requirement)
            base, _, extras = name.partition("[")
            wanted = {e for e in extras.rstrip("]").split(",") if e}
            if base not in have or not wanted <= have[base]:
                lacking.add(name)
        return lacking


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?")


def requirement_name(requirement: str) -> str:
    """`celery[redis]>=5.7,<6` -> `celery[redis]` (normalised name, sorted extras)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    extras = match.group(2)
    if extras:
        parts = sorted(e.strip().lower() for e in extras.strip("[]").split(",") if e.strip())
        return f"{name}[{','.join(parts)}]"
    return name


def requirements(pyproject: dict[str, object]) -> list[str]:
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {})
    assert isinstance(project, dict) and isinstance(groups, dict)
    return [*project.get("dependencies", []), *groups.get("dev", [])]


# The variants whose dependencies together cover every variant's: each broker x backend
# pair with every flag on (flags only ever add dependencies; each variant's static test
# checks that its own are covered).
_ALL_FLAGS_ON: dict[str, Any] = dict.fromkeys(FLAGS, True)
MAXIMAL_VARIANTS = tuple(
    Variant(broker, backend, **_ALL_FLAGS_ON) for broker in BROKERS for backend in RESULT_BACKENDS
)


@dataclass
class VariantRenders:
    shared_root: Path  # common to all workers of this pytest run
    _trees: dict[Variant, VariantTree] = field(default_factory=dict)
    _env: UnionEnv | None = None
    # Seconds this worker spent rendering each variant, until taken (for the timing summary).
    _render_seconds: dict[Variant, float] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.shared_root / "variants"

    def snapshot(self) -> Path:
        """The template's working tree, copied once per run."""
        snapshot = self.root / "template"
        done = self.root / "template.ok"
        with locked(self.root / "template.lock"):
            if not done.exists():
                snapshot_template(snapshot)
                done.write_text("")
        return snapshot

    def get(self, variant: Variant) -> VariantTree:
        if variant in self._trees:
            return self._trees[variant]
        destination = self.root / variant.id / "my-service"

        def timed_render() -> None:
            template = self.snapshot()
            started = time.monotonic()
            try:
                render(destination, template=template, **variant.answers)
            finally:
                self._render_seconds[variant] = time.monotonic() - started

        prepare_once(destination.parent, timed_render)
        files = tuple(
            sorted(p.relative_to(destination) for p in destination.rglob("*") if p.is_file())
        )
        tree = VariantTree(variant, destination, files)
        self._trees[variant] = tree
        return tree

    def take_render_seconds(self, variant: Variant) -> float | None:
        """How long this worker took to render variant, once (None: not rendered here)."""
        return self._render_seconds.pop(variant, None)

    def union_env(self) -> UnionEnv:
        """One environment with every variant's dependencies, synced once per run."""
        if self._env is not None:
            return self._env
        root = self.shared_root / "union-env"
        prepare_once(root, lambda: self._build_union_env(root))
        self._env = UnionEnv(root)
        return self._env

    def _build_union_env(self, root: Path) -> None:
        dependencies: list[str] = []
        dev: list[str] = []
        for variant in MAXIMAL_VARIANTS:
            pyproject = self.get(variant).pyproject()
            project, groups = pyproject["project"], pyproject["dependency-groups"]
            assert isinstance(project, dict) and isinstance(groups, dict)
            dependencies += [d for d in project["dependencies"] if d not in dependencies]
            dev += [d for d in groups["dev"] if d not in dev]
        root.mkdir(parents=True, exist_ok=True)
        quoted = ",\n".join(f"    {json.dumps(d)}" for d in dependencies)
        quoted_dev = ",\n".join(f"    {json.dumps(d)}" for d in dev)
        (root / "pyproject.toml").write_text(
            "# Every variant's dependencies (tests/matrix.py): ruff and mypy run here.\n"
            "[project]\n"
            'name = "variants-union"\n'
            'version = "0"\n'
            f'requires-python = ">={DEFAULT_PYTHON}"\n'
            f"dependencies = [\n{quoted},\n]\n\n"
            f"[dependency-groups]\ndev = [\n{quoted_dev},\n]\n\n"
            "[tool.uv]\npackage = false\n"
        )
        (root / ".python-version").write_text(f"{DEFAULT_PYTHON}\n")
        uv_sync(root, timeout=900)

    def mypy_cache(self) -> Path:
        """This worker's own mypy cache (concurrent mypy runs must not share one)."""
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        return self.shared_root / "mypy-cache" / worker
