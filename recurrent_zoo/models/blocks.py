"""A residual block around any zoo layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan
from recurrent_zoo.models.norms import NORMS, apply_norm, make_norm

Array = jax.Array
Dtype = Any
MLPS = ("glu", "mlp")


class RecurrentBlock(nn.Module):
    """A zoo layer inside a residual block.

    With ``prenorm=True`` (the paper's block, ``mlp="glu"``)::

        u = layer(norm₁(x));  v = GELU(u);  y = x + dropout(out1(norm₂(v)) · σ(out2(norm₂(v))))

    and with ``prenorm=False`` one norm after the residual sum: ``y = norm(x + dropout(f(x)))``.
    ``mlp="mlp"`` replaces the GLU by one Dense layer ``out(v)`` (so layer → GELU → Dense is a
    per-step MLP with the recurrent layer as its first layer); ``mlp=None`` drops it, and then
    the layer's output size must equal the input size. ``norm=None`` drops both norms.

    Shapes: x [*batch, T, D] → y [*batch, T, D]; the state is the layer's. Outputs past
    ``lengths`` are zeros, as for the layers.

    Attributes:
      layer: any zoo layer (or a module with the same sequence/step contract).
      norm: "layer", "batch" (statistics over batch and time, padding masked out), "rms" or None.
      mlp: "glu", "mlp" or None.
      dropout: dropout rate on the branch, active when called with ``train=True`` (needs the
        "dropout" rng).
      prenorm: normalise the branch's inputs (True) or the block's output (False).
      epsilon: the norms' ε.
      momentum: batch norm's running-average momentum.
      activation: applied to the layer's output (GELU in the paper).
      dtype, param_dtype: of the norms and the Dense layers.
    """

    layer: nn.Module
    norm: str | None = "layer"
    mlp: str | None = "glu"
    dropout: float = 0.0
    prenorm: bool = True
    epsilon: float = 1e-5
    momentum: float = 0.9
    activation: Callable[[Array], Array] = nn.gelu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        if not isinstance(self.layer, nn.Module):
            raise TypeError(f"layer must be a flax Module (a zoo layer), got {type(self.layer)}")
        if self.norm is not None:
            checks.choice(self.norm, NORMS, "norm")
        if self.mlp is not None:
            checks.choice(self.mlp, MLPS, "mlp")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        super().__post_init__()

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> Any:
        """The layer's zero state for inputs with leading dims ``batch_shape``."""
        return self.layer.initial_state(batch_shape)

    @nn.compact
    def _residual(
        self, x: Array, run_layer: Callable[[Array], tuple[Any, Array]], train: bool, mask
    ) -> tuple[Any, Array]:
        """The block around ``run_layer`` (the sequence call or one step); x [..., D]."""
        d = x.shape[-1]
        norm = lambda name: make_norm(
            self.norm,
            name=name,
            epsilon=self.epsilon,
            momentum=self.momentum,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        dense = lambda name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

        h = apply_norm(norm("norm"), x, train=train, mask=mask) if self.prenorm else x
        state, h = run_layer(h)
        h = self.activation(h)
        if self.mlp is not None:
            if self.prenorm:
                h = apply_norm(norm("mlp_norm"), h, train=train, mask=mask)
            if self.mlp == "glu":
                h = dense("out1")(h) * jax.nn.sigmoid(dense("out2")(h))
            else:
                h = dense("out")(h)
        elif h.shape[-1] != d:
            raise ValueError(
                f"with mlp=None the layer's output size must equal the input size for the "
                f"residual, got {h.shape[-1]} outputs for {d} inputs: set the layer's "
                f"hidden_size/out_features to {d} or use mlp='glu'"
            )
        h = nn.Dropout(self.dropout, name="dropout")(h, deterministic=not train)
        y = x + h.astype(x.dtype)
        if not self.prenorm:
            y = apply_norm(norm("norm"), y, train=train, mask=mask)
        return state, y

    def __call__(
        self,
        x: Array,
        *,
        train: bool = False,
        initial_state: Any = None,
        resets: Array | None = None,
        lengths: Array | None = None,
        reverse: bool = False,
        return_state: bool = False,
    ) -> Array | tuple[Any, Array]:
        """Runs the block over x [*batch, T, D]; arguments as for the layers (see ``RecurrentLayer``).

        ``train``: dropout on, batch norm from batch statistics (pass ``mutable=["batch_stats"]``).
        Returns y [*batch, T, D], or ``(state, y)`` when ``return_state``.
        """
        batch_shape, T, _ = checks.sequence_input(x, "x")
        lengths = checks.lengths(lengths, batch_shape, T)
        mask = scan.valid_mask(lengths, T, time_axis=-1)
        kw: dict[str, Any] = {"initial_state": initial_state, "resets": resets, "lengths": lengths}
        if reverse:  # only when asked: rz.Bidirectional, say, takes no `reverse`
            kw["reverse"] = True
        run = lambda h: self.layer(h, return_state=True, **kw)
        state, y = self._residual(x, run, train, mask)
        if mask is not None:
            y = jnp.where(mask[..., None], y, jnp.zeros_like(y))
        return (state, y) if return_state else y

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step, ``state, x_t [*batch, D] -> (state, y_t [*batch, D])`` (eval mode: no dropout,
        batch norm from its running averages)."""
        checks.step_input(x_t, "x_t")
        return self._residual(x_t, lambda h: self.layer.step(state, h), False, None)
