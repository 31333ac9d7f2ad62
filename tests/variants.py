"""The template's option combinations ("variants"): every valid one, and the booted few.

A `Variant` is one answer to each option question of copier.yml (python_version stays at
its default). `ALL_VARIANTS` is every valid combination, in an order where neighbours
differ in the fewest Python files (ci varies fastest: it changes no Python at all), so
checks that reuse a cache run warm. `BOOT_VARIANTS` is the covering set booted for real:
every broker x result_backend pair, each flag on and off at least once, and api_auth
both ways.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

BROKERS = ("redis", "rabbitmq")
RESULT_BACKENDS = ("redis", "postgresql")
FLAGS = ("use_flower", "use_sse", "use_email", "use_webhooks", "use_beat")
API_AUTHS = ("api_key", "none")
CIS = ("github", "gitlab", "none")


@dataclass(frozen=True)
class Variant:
    broker: str = "redis"
    result_backend: str = "redis"
    use_flower: bool = True
    use_sse: bool = True
    use_email: bool = True
    use_webhooks: bool = True
    use_beat: bool = False
    api_auth: str = "api_key"
    ci: str = "github"

    @property
    def answers(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def valid(self) -> bool:
        # copier.yml refuses use_beat=false with PostgreSQL: only beat purges its results.
        return not (self.result_backend == "postgresql" and not self.use_beat)

    @property
    def uses_redis(self) -> bool:
        return "redis" in (self.broker, self.result_backend)

    @property
    def is_default(self) -> bool:
        return self == Variant()

    @property
    def has_api_key(self) -> bool:
        return self.api_auth == "api_key"

    @property
    def id(self) -> str:
        """e.g. `rabbitmq-postgresql-flower.sse.beat-apikey-gitlab` (flags on, in FLAGS order;
        then `apikey` or `noauth`)."""
        on = [flag.removeprefix("use_") for flag in FLAGS if getattr(self, flag)]
        auth = "apikey" if self.has_api_key else "noauth"
        return f"{self.broker}-{self.result_backend}-{'.'.join(on) or 'bare'}-{auth}-{self.ci}"

    @property
    def python_key(self) -> tuple[object, ...]:
        """What can change the rendered Python files (ci cannot)."""
        return (
            self.broker,
            self.result_backend,
            *(getattr(self, f) for f in FLAGS),
            self.api_auth,
        )


def _all_variants() -> tuple[Variant, ...]:
    found = []
    for broker, backend, flags, api_auth, ci in itertools.product(
        BROKERS,
        RESULT_BACKENDS,
        itertools.product((True, False), repeat=len(FLAGS)),
        API_AUTHS,
        CIS,
    ):
        flag_answers: dict[str, Any] = dict(zip(FLAGS, flags, strict=True))
        variant = Variant(broker, backend, api_auth=api_auth, ci=ci, **flag_answers)
        if variant.valid:
            found.append(variant)
    return tuple(found)


ALL_VARIANTS = _all_variants()

# The combination copier.yml must refuse (and one of its kind, for the answer tests).
INVALID_VARIANT = Variant(result_backend="postgresql", use_beat=False)


# --------------------------------------------------------------------------------------
# The covering set, booted end to end (tests/test_boot_*.py) and its suites run with
# services (tests/test_service_suite.py).


@dataclass(frozen=True)
class BootVariant:
    letter: str
    variant: Variant

    @property
    def id(self) -> str:
        """e.g. `B-rabbitmq-postgresql`: the letter makes it unique, the rest readable."""
        return f"{self.letter}-{self.variant.broker}-{self.variant.result_backend}"


BOOT_VARIANTS = (
    BootVariant("A", Variant()),
    BootVariant(
        "B",
        Variant(
            broker="rabbitmq",
            result_backend="postgresql",
            use_flower=True,
            use_sse=True,
            use_email=False,
            use_webhooks=False,
            use_beat=True,
            ci="gitlab",
        ),
    ),
    BootVariant(
        "C",
        Variant(
            broker="rabbitmq",
            result_backend="redis",
            use_flower=False,
            use_sse=False,
            use_email=True,
            use_webhooks=True,
            use_beat=True,
            api_auth="none",
            ci="none",
        ),
    ),
    BootVariant(
        "D",
        Variant(
            broker="redis",
            result_backend="postgresql",
            use_flower=False,
            use_sse=True,
            use_email=True,
            use_webhooks=False,
            use_beat=True,
            api_auth="none",
            ci="github",
        ),
    ),
)


def boot_params(
    applies: Callable[[Variant], bool] = lambda _: True,
) -> list[object]:
    """The booted variants a feature applies to, as parameters with readable ids."""
    return [pytest.param(b, id=b.id) for b in BOOT_VARIANTS if applies(b.variant)]


STATIC_MODULE = "tests/test_variants_static.py"
# The boot tests, in the order a variant's tests run (tests/stack.py): the first need no
# worker yet, beat's come last.
BOOT_MODULES = tuple(
    f"tests/test_boot_{concern}.py"
    for concern in (
        "endpoints",
        "streams",
        "cancel",
        "bad_input",
        "security",
        "backends_down",
        "rabbitmq",
        "flower",
        "beat",
    )
)
_BOOT_ID = re.compile(r"[\[-](" + "|".join(re.escape(b.id) for b in BOOT_VARIANTS) + r")(?=[\]-])")


def boot_scope(nodeid: str) -> str | None:
    """The booted variant a boot test belongs to (its xdist work unit), else None."""
    if not nodeid.startswith(BOOT_MODULES):
        return None
    params = nodeid.partition("[")[2]
    match = _BOOT_ID.search("[" + params)
    return f"boot:{match.group(1)}" if match else None


def static_scope(nodeid: str) -> str | None:
    """For a static variant test: its variant's id without the ci part, else None.

    Variants that differ only in ci have the same Python files: one worker checks them
    all, so the shared ruff and mypy results are never waited for by the other.
    """
    if not nodeid.startswith(STATIC_MODULE + "::"):
        return None
    variant_id = nodeid.partition("[")[2].rstrip("]")
    python_part, _, ci = variant_id.rpartition("-")
    return f"static:{python_part}" if ci in CIS and python_part else None
