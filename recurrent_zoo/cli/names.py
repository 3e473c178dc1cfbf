"""The zoo's layer names, classes and one-line summaries, known without importing Flax.

``recurrent-zoo list`` prints them and ``--layers`` offers them, so that neither has to import
the layers (and with them JAX and Flax). ``tests/test_cli.py`` checks that this table is
:data:`recurrent_zoo.LAYERS`: each name, its class's name and its docstring's first line.
"""

from __future__ import annotations

#: Registry name -> (class name, first line of the class's docstring), in ``rz.LAYERS`` order.
LAYERS: dict[str, tuple[str, str]] = {
    "rnn": ("VanillaRNN", "Elman RNN."),
    "ln_rnn": (
        "LayerNormRNN",
        "Elman RNN with layer normalisation of the pre-activation inside the recurrence.",
    ),
    "crnn": ("ComplexDiagonalRNN", "Complex diagonal linear RNN."),
    "mh_linear": (
        "MultiHeadLinearRNN",
        "Real linear RNN whose recurrence is block-diagonal with ``num_heads`` dense blocks.",
    ),
    "lru": ("LRU", "Linear Recurrent Unit (Orvieto et al. 2023)."),
    "gru": ("GRU", "GRU with PyTorch's equations (``torch.nn.GRU``):"),
    "lstm": (
        "LSTM",
        "LSTM with PyTorch's equations and gate order i, f, g, o (``torch.nn.LSTM``):",
    ),
}

__all__ = ["LAYERS"]
