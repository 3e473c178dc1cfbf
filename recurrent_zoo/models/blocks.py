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
    ``lengths`` are zeros, as for the layers. Inside a ``shard_map`` binding the layer's
    ``sequence_axis`` x is this device's chunk of time and ``lengths`` count global steps.

    Attributes:
      layer: any zoo layer (or a module with the same sequence/step contract).
      norm: "layer", "batch" (statistics over batch and time, padding masked out; with the
        layer's ``sequence_axis``, over the whole sequence sharded along it:
        :class:`~recurrent_zoo.models.norms.SequenceBatchNorm`), "rms" or None.
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
        check_settings(self.norm, self.mlp, self.dropout)
        super().__post_init__()

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> Any:
        """The layer's zero state for inputs with leading dims ``batch_shape``."""
        return self.layer.initial_state(batch_shape)

    @nn.compact
    def _residual(
        self, x: Array, run_layer: Callable[[Array], tuple[Any, Array]], train: bool, mask
    ) -> tuple[Any, Array]:
        """:func:`residual` with linen submodules; x [..., D]."""
        d = x.shape[-1]

        def norm(name: str) -> Callable[[Array], Array] | None:
            module = make_norm(
                self.norm,
                name=name,
                epsilon=self.epsilon,
                momentum=self.momentum,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                sequence_axis=sequence_axis_of(self.layer),
            )
            return (
                None if module is None else lambda h: apply_norm(module, h, train=train, mask=mask)
            )

        dense = lambda name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
        dropout = nn.Dropout(self.dropout, name="dropout")
        return residual(
            x,
            run_layer,
            norm=norm,
            dense=dense,
            dropout=lambda h: dropout(h, deterministic=not train),
            mlp=self.mlp,
            prenorm=self.prenorm,
            activation=self.activation,
        )

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
        return block_sequence(
            self.layer,
            lambda h, run_layer, mask: self._residual(h, run_layer, train, mask),
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=return_state,
        )

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step, ``state, x_t [*batch, D] -> (state, y_t [*batch, D])`` (eval mode: no dropout,
        batch norm from its running averages)."""
        return block_step(
            self.layer.step,
            lambda h, run_layer: self._residual(h, run_layer, False, None),
            state,
            x_t,
        )


# -- the block's data path, for any front-end ------------------------------------------------
def sequence_axis_of(layer: Any) -> str | None:
    """The mesh axis ``layer`` shards time over (its ``sequence_axis``; None: not sharded)."""
    return getattr(layer, "sequence_axis", None)


def check_settings(norm: str | None, mlp: str | None, dropout: float) -> None:
    """The block's ``norm``, ``mlp`` and ``dropout`` settings are valid, else a ValueError."""
    if norm is not None:
        checks.choice(norm, NORMS, "norm")
    if mlp is not None:
        checks.choice(mlp, MLPS, "mlp")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


# Each front-end passes its own submodules as callables; the order in which they are called is
# the one their parameters are created in under linen.
def residual(
    x: Array,
    run_layer: Callable[[Array], tuple[Any, Array]],
    *,
    norm: Callable[[str], Callable[[Array], Array] | None],
    dense: Callable[[str], Callable[[Array], Array]],
    dropout: Callable[[Array], Array],
    mlp: str | None,
    prenorm: bool,
    activation: Callable[[Array], Array],
) -> tuple[Any, Array]:
    """The block around ``run_layer`` (the sequence call or one step), x [..., D] → y [..., D]:
    ``[norm] → layer → activation → [norm → GLU or Dense] → dropout → + x → [norm]``.

    Args:
      x: the block's input, features on the last axis.
      run_layer: h -> (state, layer's output).
      norm: name ("norm", "mlp_norm") -> the norm of that name applied to h, or None (no norm).
      dense: name ("out1", "out2", "out") -> the Dense layer of that name (D outputs).
      dropout: the branch's dropout (identity in eval mode).
      mlp, prenorm, activation: as :class:`RecurrentBlock`'s.

    Returns:
      ``(state, y)``.
    """
    d = x.shape[-1]
    pre = norm("norm") if prenorm else None
    h = x if pre is None else pre(x)
    state, h = run_layer(h)
    h = activation(h)
    if mlp is not None:
        mid = norm("mlp_norm") if prenorm else None
        if mid is not None:
            h = mid(h)
        if mlp == "glu":
            h = dense("out1")(h) * jax.nn.sigmoid(dense("out2")(h))
        else:
            h = dense("out")(h)
    elif h.shape[-1] != d:
        raise ValueError(
            f"with mlp=None the layer's output size must equal the input size for the "
            f"residual, got {h.shape[-1]} outputs for {d} inputs: set the layer's "
            f"hidden_size/out_features to {d} or use mlp='glu'"
        )
    y = x + dropout(h).astype(x.dtype)
    post = None if prenorm else norm("norm")
    return state, y if post is None else post(y)


def block_sequence(
    layer: Callable[..., tuple[Any, Array]],
    block: Callable[[Array, Callable[[Array], tuple[Any, Array]], Array | None], tuple[Any, Array]],
    x: Array,
    *,
    initial_state: Any = None,
    resets: Array | None = None,
    lengths: Array | None = None,
    reverse: bool = False,
    return_state: bool = False,
) -> Array | tuple[Any, Array]:
    """The block's sequence call: checks, the padding mask, ``block(x, run_layer, mask)`` (the
    front-end's :func:`residual`) around ``layer`` (the layer's call, its keywords), outputs
    past ``lengths`` zeroed. x [*batch, T, D] → y [*batch, T, D] (or ``(state, y)``).

    Inside a map binding the layer's ``sequence_axis``, x is this device's chunk of time and
    ``lengths`` count global steps; the mask is the chunk's."""
    batch_shape, T, _ = checks.sequence_input(x, "x")
    T_all, offset = scan.time_chunk(sequence_axis_of(layer), T)
    lengths = checks.lengths(lengths, batch_shape, T_all)
    mask = scan.valid_mask(lengths, T, time_axis=-1, offset=offset)
    kw: dict[str, Any] = {"initial_state": initial_state, "resets": resets, "lengths": lengths}
    if reverse:  # only when asked: rz.Bidirectional, say, takes no `reverse`
        kw["reverse"] = True
    state, y = block(x, lambda h: layer(h, return_state=True, **kw), mask)
    if mask is not None:
        y = jnp.where(mask[..., None], y, jnp.zeros_like(y))
    return (state, y) if return_state else y


def block_step(
    layer_step: Callable[[Any, Array], tuple[Any, Array]],
    block: Callable[[Array, Callable[[Array], tuple[Any, Array]]], tuple[Any, Array]],
    state: Any,
    x_t: Array,
) -> tuple[Any, Array]:
    """One step of the block: ``block(x_t, run_layer)`` (the front-end's :func:`residual` in
    eval mode) around ``layer_step(state, ·)``; x_t [*batch, D] → (state, y_t [*batch, D])."""
    checks.step_input(x_t, "x_t")
    return block(x_t, lambda h: layer_step(state, h))
