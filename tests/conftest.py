"""pytest configuration shared by the test suite.

The layer harness itself (cases, shared compiled calls) lives in ``tests/harness.py`` and the
NumPy references in ``tests/reference.py``; both are imported as plain modules from this folder.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import jax
import pytest

# Test helpers (harness, reference) are plain modules next to the tests.
sys.path.insert(0, os.path.dirname(__file__))

# Every executable XLA compiles on the CPU keeps memory mappings for its code, and one pytest
# process compiles thousands: past Linux's default limit of 65,530 mappings per process
# (vm.max_map_count) the next compilation dies with a segmentation fault inside XLA. Between
# modules, once about half of that is in use, drop JAX's compiled executables (the next module
# recompiles what it needs), so that the whole suite runs in one process.
MAPPINGS_BUDGET = int(os.environ.get("RZ_TEST_MAPPINGS_BUDGET", "32000"))


def mapped_regions() -> int | None:
    """The number of memory mappings of this process (None where /proc is not available)."""
    try:
        with Path("/proc/self/maps").open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _bounded_executables():
    yield
    regions = mapped_regions()
    if regions is not None and regions > MAPPINGS_BUDGET:
        jax.clear_caches()
        gc.collect()
        if os.environ.get("RZ_TEST_REPORT_MAPPINGS"):
            print(f"\n[conftest] {regions} memory mappings -> {mapped_regions()} after clearing")
