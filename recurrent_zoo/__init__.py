"""recurrent_zoo: recurrent layers for JAX/Flax, built around what makes RNNs trainable.

>>> import recurrent_zoo as rz
>>> layer = rz.LRU(hidden_size=64)

``rz.nnx`` holds the Flax NNX twins of the layers and models (it imports ``flax.nnx`` on first use).

The names below load on first use (PEP 562), so that ``import recurrent_zoo`` and the command
line's ``--help`` and ``list`` do not pay for importing JAX and Flax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Subpackages and modules reachable as attributes (``rz.scan``, ``rz.data``, ...).
_SUBMODULES = (
    "data",
    "diagnostics",
    "embeddings",
    "initializers",
    "nnx",
    "optim",
    "parametrization",
    "scan",
    "theory",
)
#: Top-level names that ``recurrent_zoo.models`` defines; the other classes come from ``layers``.
_MODELS = ("RecurrentBlock", "SequenceModel")

if TYPE_CHECKING:
    from recurrent_zoo import (
        data,
        diagnostics,
        embeddings,
        initializers,
        nnx,
        optim,
        parametrization,
        scan,
        theory,
    )
    from recurrent_zoo.layers import (
        GRU,
        LAYERS,
        LRU,
        LSTM,
        Bidirectional,
        ComplexDiagonalRNN,
        LayerNormRNN,
        MultiHeadLinearRNN,
        RecurrentLayer,
        VanillaRNN,
        make_layer,
    )
    from recurrent_zoo.models import RecurrentBlock, SequenceModel


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in __all__:
        module = "models" if name in _MODELS else "layers"
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "GRU",
    "LAYERS",
    "LRU",
    "LSTM",
    "Bidirectional",
    "ComplexDiagonalRNN",
    "LayerNormRNN",
    "MultiHeadLinearRNN",
    "RecurrentBlock",
    "RecurrentLayer",
    "SequenceModel",
    "VanillaRNN",
    "__version__",
    "data",
    "diagnostics",
    "embeddings",
    "initializers",
    "make_layer",
    "nnx",
    "optim",
    "parametrization",
    "scan",
    "theory",
]
