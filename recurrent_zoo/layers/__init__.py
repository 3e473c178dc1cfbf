"""The seven recurrent layers, the bidirectional wrapper and the registry."""

from __future__ import annotations

from typing import Any

from recurrent_zoo.layers.base import RecurrentLayer
from recurrent_zoo.layers.bidirectional import Bidirectional
from recurrent_zoo.layers.diagonal import LRU, ComplexDiagonalRNN
from recurrent_zoo.layers.gru import GRU
from recurrent_zoo.layers.lstm import LSTM
from recurrent_zoo.layers.multihead import MultiHeadLinearRNN
from recurrent_zoo.layers.rnn import LayerNormRNN, VanillaRNN

LAYERS: dict[str, type[RecurrentLayer]] = {
    "rnn": VanillaRNN,
    "ln_rnn": LayerNormRNN,
    "crnn": ComplexDiagonalRNN,
    "mh_linear": MultiHeadLinearRNN,
    "lru": LRU,
    "gru": GRU,
    "lstm": LSTM,
}


def make_layer(name: str, **kwargs: Any) -> RecurrentLayer:
    """Builds the layer registered as ``name`` in :data:`LAYERS`, e.g. ``make_layer("lru", hidden_size=64)``."""
    if name not in LAYERS:
        raise ValueError(f"layer name must be one of {sorted(LAYERS)}, got {name!r}")
    return LAYERS[name](**kwargs)


__all__ = [
    "GRU",
    "LAYERS",
    "LRU",
    "LSTM",
    "Bidirectional",
    "ComplexDiagonalRNN",
    "LayerNormRNN",
    "MultiHeadLinearRNN",
    "RecurrentLayer",
    "VanillaRNN",
    "make_layer",
]
