"""The printable arguments in task messages, without Celery's saferepr on every publish.

Each task message carries its arguments as text (`argsrepr`, `kwargsrepr`), which `celery
inspect`, events and monitors show. Celery builds it with `saferepr`, a streaming repr that
truncates and elides; for a small JSON payload it costs about a third of `apply_async`. For
arguments made of JSON values, short and shallow enough that saferepr would neither cut nor
elide anything, its text is exactly `repr()`'s, so that is used; anything else still goes to
saferepr.
"""

from typing import Any

from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

# Printed by saferepr with str(), which for these is repr().
_SCALARS = (int, float, bool, type(None))


def _is_plain(value: object, levels: int) -> bool:
    """Whether saferepr prints `value` as repr() does, with `levels` container levels left."""
    if type(value) is str:
        # saferepr quotes strings and escapes nothing but the quote.
        return "'" not in value and "\\" not in value and value.isprintable()
    if type(value) in _SCALARS:
        return True
    if levels <= 0:
        return False  # saferepr prints a container this deep as "[...]"
    if type(value) is dict:
        return all(
            type(key) is str and _is_plain(key, 0) and _is_plain(item, levels - 1)
            for key, item in value.items()
        )
    if type(value) is list or type(value) is tuple:
        return all(_is_plain(item, levels - 1) for item in value)
    return False


def argument_repr(value: object, maxlen: int, maxlevels: int | None) -> str:
    """`saferepr(value, maxlen, maxlevels=maxlevels)`, computed by repr() where that is the same."""
    if maxlevels and _is_plain(value, maxlevels):
        text = repr(value)
        if len(text) <= maxlen:
            return text
    safe: str = saferepr(value, maxlen, maxlevels=maxlevels)
    return safe


class PlainReprAMQP(AMQP):  # type: ignore[misc,unused-ignore]  # Celery ships no types
    """Celery's message factory, with `argument_repr` for the arguments' text."""

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        *positional: Any,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        **options: Any,
    ) -> Any:
        maxlevels: int | None = self.app.conf.task_repr_maxlevels
        if argsrepr is None:
            argsrepr = argument_repr(args or (), self.argsrepr_maxsize, maxlevels)
        if kwargsrepr is None:
            kwargsrepr = argument_repr(kwargs or {}, self.kwargsrepr_maxsize, maxlevels)
        return super().as_task_v2(
            task_id,
            name,
            args,
            kwargs,
            *positional,
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
            **options,
        )
