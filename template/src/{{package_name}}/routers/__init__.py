"""HTTP routers, one module per feature: your endpoints go here.

Each module here that defines `router` (a FastAPI `APIRouter`) is included in the app, in
the order of the module names: a new endpoint module is served without editing a list.
Modules whose name starts with `_` hold shared helpers (`_shared.py`) and are not searched.
"""

from importlib import import_module
from pkgutil import iter_modules

from fastapi import APIRouter


def discover_routers() -> dict[str, APIRouter]:
    """The `router` of every module of this package, by module name (in that order)."""
    routers = {}
    for module_info in sorted(iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = import_module(f"{__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers[module_info.name] = router
    return routers
