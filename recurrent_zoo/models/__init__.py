"""Residual blocks around the zoo's layers and the deep sequence model built from them."""

from recurrent_zoo.models.blocks import MLPS, RecurrentBlock
from recurrent_zoo.models.norms import NORMS, apply_norm, make_norm
from recurrent_zoo.models.sequence_model import POOLINGS, SequenceModel, pool

__all__ = [
    "MLPS",
    "NORMS",
    "POOLINGS",
    "RecurrentBlock",
    "SequenceModel",
    "apply_norm",
    "make_norm",
    "pool",
]
