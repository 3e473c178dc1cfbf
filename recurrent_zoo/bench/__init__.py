"""Benchmarks run by ``recurrent-zoo bench NAME``.

Each public module here is one bench. It defines ``NAME`` (the command-line name), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> dict`` (the results it wrote). Heavy imports
(matplotlib, data loaders) happen inside ``run`` so that ``recurrent-zoo --help`` stays fast.
Every bench gets ``--out``, ``--full`` and ``--seed`` from :mod:`recurrent_zoo.cli`.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> dict[str, ModuleType]:
    """Bench modules by command-line name, in alphabetical order."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return dict(sorted(found.items()))
