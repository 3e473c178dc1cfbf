"""The Flax NNX front-end: an ``nnx.Module`` twin of every layer, block and model.

Example::

    layer = rz.nnx.LRU(in_features=64, hidden_size=256, rngs=nnx.Rngs(0))
    y = layer(x)                                        # x [*batch, T, 64]
    m = rz.nnx.from_linen(rz.LRU(hidden_size=256), variables)

Each twin takes its linen twin's fields plus ``in_features`` (parameters are created eagerly) and
``rngs``, runs the same functional core (the same numbers), and holds its parameters under the
linen names: :func:`from_linen` and :func:`to_linen` move checkpoints between the two.
"""

from recurrent_zoo.nnx.convert import from_linen, to_linen, twin
from recurrent_zoo.nnx.layers import (
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
from recurrent_zoo.nnx.models import RecurrentBlock, SequenceModel

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
    "from_linen",
    "make_layer",
    "to_linen",
    "twin",
]
