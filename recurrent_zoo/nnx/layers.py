"""Flax NNX twins of the zoo's layers and of :class:`recurrent_zoo.Bidirectional`.

Each twin holds the unbound linen layer as its settings (so the linen dataclass validates them
and gives the same named errors) and one ``nnx.Param`` per entry of its ``param_specs``, named as
the linen parameter. Its call and step are :func:`recurrent_zoo.layers.base.apply_sequence` and
:func:`~recurrent_zoo.layers.base.apply_step` on those parameters: the same numbers as
``linen_layer.apply({"params": p}, ...)``, with no copy of the layers' math.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
from flax import nnx

from recurrent_zoo import _checks as checks
from recurrent_zoo import layers as linen_layers
from recurrent_zoo.layers import base
from recurrent_zoo.layers.bidirectional import MERGES, run_bidirectional

Array = jax.Array

# Linen's own dataclass fields, not settings of the layer.
_LINEN_ONLY = ("parent", "name")
# Read-only views of the linen twin besides its fields.
_DERIVED = ("real_dtype", "state_dtype", "state_shape")


def settings(linen_layer: Any) -> dict[str, Any]:
    """The constructor fields of a linen module (its dataclass fields but ``parent``/``name``)."""
    return {
        f.name: getattr(linen_layer, f.name)
        for f in dataclasses.fields(linen_layer)
        if f.init and f.name not in _LINEN_ONLY
    }


class RecurrentLayer(nnx.Module):
    """Base class of the NNX twins: ``Twin(in_features, hidden_size, *, rngs, **fields)``.

    The fields are the linen twin's (``linen_class``), readable as attributes (``layer.hidden_size``);
    ``rngs.params`` draws the parameters, created eagerly for inputs of ``in_features`` features.

    Attributes:
      linen: the linen twin, unbound: the settings and the functional core.
      in_features: D_in, the inputs' feature size.
      param_names: the parameters' names (the linen ones), in creation order.
    """

    linen_class: ClassVar[type[base.RecurrentLayer]] = base.RecurrentLayer

    def __init__(
        self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **fields: Any
    ) -> None:
        checks.positive_int(in_features, "in_features")
        for name in _LINEN_ONLY:
            if name in fields:
                raise TypeError(f"{type(self).__name__} takes no {name!r} (a linen-only field)")
        self.linen = self.linen_class(hidden_size=hidden_size, parent=None, **fields)
        self.in_features = in_features
        specs = self.linen.param_specs(in_features)
        inits = base.resolve_inits(specs, rngs.params)
        for name, s in specs.items():
            setattr(self, name, nnx.Param(inits[name](rngs.params(), s.shape, s.dtype)))
        self.param_names = tuple(specs)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the linen twin's fields, read-only.
        linen = vars(self).get("linen")
        if linen is not None and (name in _DERIVED or name in settings(linen)):
            return getattr(linen, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def params(self) -> base.Params:
        """``{name: value}``, the ``p`` of the functional core (``variables["params"]`` in linen)."""
        return {name: getattr(self, name)[...] for name in self.param_names}

    def _check_features(self, d: int, name: str) -> None:
        built = f"built with in_features={self.in_features}"
        checks.feature_size(d, self.in_features, name, built=built)

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> Any:
        """The zero state for inputs with leading dims ``batch_shape``; [*batch, N]."""
        return self.linen.initial_state(batch_shape)

    def __call__(
        self,
        x: Array,
        *,
        initial_state: Any = None,
        resets: Array | None = None,
        lengths: Array | None = None,
        reverse: bool = False,
        return_state: bool = False,
    ) -> Array | tuple[Any, Array]:
        """Runs the layer over a sequence, as the linen call.

        Args:
          x: float [*batch, T, in_features].
          initial_state: state [*batch, N] (zeros when None).
          resets: bool [*batch, T]; True at t zeroes the state before x_t is read.
          lengths: int [*batch] in [0, T]; steps t ≥ length are padding (zero outputs).
          reverse: run time backwards over each sequence's valid part; y stays aligned with x.
          return_state: also return the state after the last valid step.

        Returns:
          y [*batch, T, D_out], or ``(state, y)`` when ``return_state``.
        """
        _, _, d = checks.sequence_input(x, "x")
        self._check_features(d, "x")
        return base.apply_sequence(
            self.linen,
            self.params,
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=return_state,
        )

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step: ``state [*batch, N], x_t [*batch, in_features] -> (state, y_t [*batch, D_out])``."""
        _, d = checks.step_input(x_t, "x_t")
        self._check_features(d, "x_t")
        return base.apply_step(self.linen, self.params, state, x_t)


class VanillaRNN(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.VanillaRNN` (same fields, parameters and numbers)."""

    linen_class = linen_layers.VanillaRNN


class LayerNormRNN(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.LayerNormRNN` (same fields, parameters and numbers)."""

    linen_class = linen_layers.LayerNormRNN


class ComplexDiagonalRNN(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.ComplexDiagonalRNN` (same fields, parameters and numbers)."""

    linen_class = linen_layers.ComplexDiagonalRNN


class MultiHeadLinearRNN(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.MultiHeadLinearRNN` (same fields, parameters and numbers)."""

    linen_class = linen_layers.MultiHeadLinearRNN


class LRU(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.LRU` (same fields, parameters and numbers)."""

    linen_class = linen_layers.LRU


class GRU(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.GRU` (same fields, parameters and numbers)."""

    linen_class = linen_layers.GRU


class LSTM(RecurrentLayer):
    """NNX twin of :class:`recurrent_zoo.LSTM` (same fields, parameters and numbers)."""

    linen_class = linen_layers.LSTM


LAYERS: dict[str, type[RecurrentLayer]] = {
    "rnn": VanillaRNN,
    "ln_rnn": LayerNormRNN,
    "crnn": ComplexDiagonalRNN,
    "mh_linear": MultiHeadLinearRNN,
    "lru": LRU,
    "gru": GRU,
    "lstm": LSTM,
}
#: The twin of each linen layer class.
TWINS: dict[type[base.RecurrentLayer], type[RecurrentLayer]] = {
    cls.linen_class: cls for cls in LAYERS.values()
}


def make_layer(name: str, in_features: int, *, rngs: nnx.Rngs, **kwargs: Any) -> RecurrentLayer:
    """Builds the twin registered as ``name`` in :data:`LAYERS`, e.g.
    ``make_layer("lru", 64, hidden_size=128, rngs=nnx.Rngs(0))``."""
    if name not in LAYERS:
        raise ValueError(f"layer name must be one of {sorted(LAYERS)}, got {name!r}")
    return LAYERS[name](in_features, rngs=rngs, **kwargs)


class Bidirectional(nnx.Module):
    """NNX twin of :class:`recurrent_zoo.Bidirectional`: ``forward`` over time, ``backward``
    over reversed time (each sequence's valid part), merged by concatenation or sum.

    The state is the pair ``(state_fwd, state_bwd)``. One module given as both directions is
    cloned (two layers starting from the same weights), as linen gives each its own parameters.

    Attributes:
      forward: layer run forwards.
      backward: layer run with ``reverse=True``.
      merge: "concat" or "sum".
    """

    def __init__(self, forward: nnx.Module, backward: nnx.Module, merge: str = "concat") -> None:
        checks.choice(merge, MERGES, "merge")
        self.forward = forward
        self.backward = nnx.clone(forward) if backward is forward else backward
        self.merge = merge

    @property
    def in_features(self) -> int:
        """The forward layer's input feature size."""
        return self.forward.in_features

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> tuple[Any, Any]:
        return self.forward.initial_state(batch_shape), self.backward.initial_state(batch_shape)

    def __call__(
        self,
        x: Array,
        *,
        initial_state: tuple[Any, Any] | None = None,
        resets: Array | None = None,
        lengths: Array | None = None,
        return_state: bool = False,
    ) -> Array | tuple[tuple[Any, Any], Array]:
        """x [*batch, T, D_in] → y [*batch, T, D_fwd + D_bwd] (concat) or [*batch, T, D_out] (sum)."""
        return run_bidirectional(
            self.forward,
            self.backward,
            self.merge,
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            return_state=return_state,
        )
