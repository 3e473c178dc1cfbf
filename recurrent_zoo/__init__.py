"""recurrent_zoo: recurrent layers for JAX/Flax, built around what makes RNNs trainable.

>>> import recurrent_zoo as rz
>>> layer = rz.LRU(hidden_size=64)
"""

from recurrent_zoo import (
    data,
    diagnostics,
    embeddings,
    initializers,
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

__version__ = "0.1.0"

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
    "optim",
    "parametrization",
    "scan",
    "theory",
]
