"""Benchmarks run by ``recurrent-zoo bench NAME``: thin drivers over the library.

Each public module here is one bench. It defines ``NAME`` (the command-line name), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> dict`` (the results it wrote). The science
lives in the library (tasks in :mod:`recurrent_zoo.tasks`, diagnostics in
:mod:`recurrent_zoo.diagnostics`, data in :mod:`recurrent_zoo.data`); a bench picks sizes, runs,
prints a table and writes ``NAME.json`` and plots (:mod:`._common`).

Options: every bench gets ``--out``, ``--full`` and ``--seed`` from
:func:`recurrent_zoo.cli.options.add_common`, spells ``--layers`` with
:func:`~recurrent_zoo.cli.options.add_layers` and its quick/full sizes with
:class:`~recurrent_zoo.cli.options.Sizes`. A bench module imports only light modules at its top;
JAX, NumPy and matplotlib are imported inside the functions that use them, so that
``recurrent-zoo --help`` and ``recurrent-zoo bench NAME --help`` stay fast.
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
