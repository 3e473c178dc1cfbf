"""pytest configuration shared by the test suite.

The layer harness itself (cases, shared compiled calls) lives in ``tests/harness.py`` and the
NumPy references in ``tests/reference.py``; both are imported as plain modules from this folder.
"""

from __future__ import annotations

import os
import sys

# Test helpers (harness, reference) are plain modules next to the tests.
sys.path.insert(0, os.path.dirname(__file__))
