"""A deep sequence model: encoder, a stack of residual recurrent blocks, pooling and decoder."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan
from recurrent_zoo.layers import LAYERS, make_layer
from recurrent_zoo.models.blocks import RecurrentBlock, sequence_axis_of

Array = jax.Array
Dtype = Any
POOLINGS = (None, "mean", "last")


def pool(
    y: Array, lengths: Array | None, how: str | None, sequence_axis: str | None = None
) -> Array:
    """Pools y [*batch, T, D] over time: "mean" over the valid steps, "last" the step length − 1.

    A sequence of length 0 pools to zeros. ``how=None`` returns y unchanged. Inside a map
    binding ``sequence_axis`` y is this device's chunk of time (``lengths`` count global steps)
    and the pooled value, the whole sequence's, is summed over the axis's devices (the same on
    each).
    """
    if how is None:
        return y
    T = y.shape[-2]
    T_all, offset = scan.time_chunk(sequence_axis, T)
    if T_all != T:
        return _pool_sharded(y, lengths, how, sequence_axis, T_all, offset)
    if lengths is None:
        return jnp.mean(y, axis=-2) if how == "mean" else y[..., -1, :]
    if how == "mean":
        m = scan.valid_mask(lengths, T, time_axis=-1)[..., None].astype(y.dtype)
        return jnp.sum(y * m, axis=-2) / jnp.maximum(lengths, 1)[..., None].astype(y.dtype)
    idx = jnp.maximum(lengths - 1, 0)[..., None, None]
    last = jnp.take_along_axis(y, idx, axis=-2)[..., 0, :]
    return jnp.where((lengths > 0)[..., None], last, jnp.zeros_like(last))


def _pool_sharded(
    y: Array, lengths: Array | None, how: str, axis: str, T_all: int, offset: Array
) -> Array:
    """:func:`pool` of a chunk of T steps starting at global step ``offset`` of T_all."""
    T = y.shape[-2]
    if how == "mean":
        if lengths is None:
            return jax.lax.psum(jnp.sum(y, axis=-2), axis) / T_all
        m = scan.valid_mask(lengths, T, time_axis=-1, offset=offset)[..., None].astype(y.dtype)
        total = jax.lax.psum(jnp.sum(y * m, axis=-2), axis)
        return total / jnp.maximum(lengths, 1)[..., None].astype(y.dtype)
    # "last": the one device whose chunk holds the step contributes it, the others zeros.
    n = jnp.full(y.shape[:-2], T_all, jnp.int32) if lengths is None else lengths
    idx = n - 1 - offset
    held = (idx >= 0) & (idx < T)
    last = jnp.take_along_axis(y, jnp.clip(idx, 0, T - 1)[..., None, None], axis=-2)[..., 0, :]
    return jax.lax.psum(jnp.where(held[..., None], last, jnp.zeros_like(last)), axis)


class SequenceModel(nn.Module):
    """Encoder → ``num_layers`` × :class:`RecurrentBlock` → [pooling] → decoder.

        x [*batch, T, D_in] (float) or tokens [*batch, T] (int, with ``vocab_size``)
        → Dense or Embed to d_model → blocks → pool over time → Dense → [*batch, (T,) out_features]

    Example::

        model = rz.SequenceModel("lru", num_layers=4, d_model=64, out_features=10)
        variables = model.init(key, x)
        y = model.apply(variables, x)                                  # [B, T, 10]
        states, y_t = model.apply(variables, model.initial_state(B), x[:, 0], method="step")

    Attributes:
      layer: a name in ``rz.LAYERS`` (built with ``hidden_size`` and ``layer_kwargs``), a zoo layer
        class (the same), or a factory ``() -> layer`` called once per block.
      num_layers: number of blocks.
      d_model: width of the residual stream.
      out_features: decoder outputs.
      vocab_size: when set, the encoder is a token embedding and inputs are int token ids.
      pooling: None (one output per step), "mean" or "last" (respecting ``lengths``).
      hidden_size: the layers' state size N (default d_model).
      layer_kwargs: extra keyword arguments of the layers built by name or class (e.g.
        ``{"sequence_axis": "seq"}``: time sharded over that mesh axis inside ``shard_map``,
        pooling and batch norm reduced over it; every block's layer must agree).
      norm, mlp, dropout, prenorm: of every block (see :class:`RecurrentBlock`).
      dtype, param_dtype: of the encoder, blocks, decoder and layers built by name.
    """

    layer: str | type | Callable[[], nn.Module]
    num_layers: int
    d_model: int
    out_features: int
    vocab_size: int | None = None
    pooling: str | None = None
    hidden_size: int | None = None
    layer_kwargs: Mapping[str, Any] | None = None
    norm: str | None = "layer"
    mlp: str | None = "glu"
    dropout: float = 0.0
    prenorm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_settings(
            self.num_layers, self.d_model, self.out_features, self.vocab_size, self.pooling
        )
        if isinstance(self.layer, str):
            checks.choice(self.layer, sorted(LAYERS), "layer")
        elif not callable(self.layer):
            raise TypeError(
                f"layer must be a name in rz.LAYERS, a layer class or a factory () -> layer, "
                f"got {type(self.layer)}"
            )
        super().__post_init__()

    # -- construction --------------------------------------------------------------------
    # nowrap: building a layer here must not make it a child of this module when unbound.
    @nn.nowrap
    def _new_layer(self) -> nn.Module:
        kw = {"hidden_size": self.hidden_size or self.d_model}
        if isinstance(self.layer, str) or isinstance(self.layer, type):
            kw.update(dtype=self.dtype, param_dtype=self.param_dtype)
            kw.update(self.layer_kwargs or {})
            if isinstance(self.layer, str):
                return make_layer(self.layer, **kw)
            return self.layer(**kw)
        layer = self.layer()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"the layer factory must return a flax Module, got {type(layer)}")
        return layer

    def setup(self) -> None:
        if self.vocab_size is not None:
            self.encoder = nn.Embed(
                self.vocab_size, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype
            )
        else:
            self.encoder = nn.Dense(self.d_model, dtype=self.dtype, param_dtype=self.param_dtype)
        self.blocks = [
            RecurrentBlock(
                self._new_layer(),
                norm=self.norm,
                mlp=self.mlp,
                dropout=self.dropout,
                prenorm=self.prenorm,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )
            for _ in range(self.num_layers)
        ]
        self.decoder = nn.Dense(self.out_features, dtype=self.dtype, param_dtype=self.param_dtype)

    @nn.nowrap
    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> list[Any]:
        """Zero states, one per block, for inputs with leading dims ``batch_shape`` (works unbound)."""
        if self.scope is not None:
            return [b.initial_state(batch_shape) for b in self.blocks]
        return [self._new_layer().initial_state(batch_shape) for _ in range(self.num_layers)]

    # -- calls ---------------------------------------------------------------------------
    def __call__(
        self,
        x: Array,
        *,
        train: bool = False,
        lengths: Array | None = None,
        resets: Array | None = None,
        initial_state: Sequence[Any] | None = None,
        return_state: bool = False,
    ) -> Array | tuple[list[Any], Array]:
        """Runs the model over a sequence.

        Args:
          x: float [*batch, T, D_in], or int tokens [*batch, T] with ``vocab_size``.
          train: dropout on, batch norm from batch statistics (``mutable=["batch_stats"]``).
          lengths: int [*batch], right padding; pooling and batch norm respect it.
          resets: bool [*batch, T], passed to every layer.
          initial_state: list of per-layer states (zeros when None).
          return_state: also return the list of per-layer states after the last valid step.

        Returns:
          y [*batch, T, out_features] (pooling None) or [*batch, out_features]; with
          ``return_state``, ``(states, y)``.
        """
        return stack_sequence(
            self.encoder,
            [functools.partial(block, train=train) for block in self.blocks],
            self.decoder,
            x,
            vocab_size=self.vocab_size,
            pooling=self.pooling,
            lengths=lengths,
            resets=resets,
            initial_state=initial_state,
            return_state=return_state,
            sequence_axis=shared_sequence_axis([block.layer for block in self.blocks]),
        )

    def step(self, states: Sequence[Any], x_t: Array) -> tuple[list[Any], Array]:
        """One step through the whole stack (eval mode).

        ``states``: list of per-layer states; ``x_t``: float [*batch, D_in] or int [*batch].
        Returns ``(states, y_t [*batch, out_features])``. Stepping through x gives the sequence
        call's outputs; with ``pooling="last"`` the final step's output is the pooled output.
        """
        return stack_step(
            self.encoder,
            [block.step for block in self.blocks],
            self.decoder,
            states,
            x_t,
            vocab_size=self.vocab_size,
            pooling=self.pooling,
        )


# -- the model's data path, for any front-end ------------------------------------------------
def check_settings(
    num_layers: int, d_model: int, out_features: int, vocab_size: int | None, pooling: str | None
) -> None:
    """The model's sizes are positive ints and ``pooling`` one of :data:`POOLINGS`."""
    for name, value in (
        ("num_layers", num_layers),
        ("d_model", d_model),
        ("out_features", out_features),
    ):
        checks.positive_int(value, name)
    checks.optional_positive_int(vocab_size, "vocab_size")
    checks.choice(pooling, POOLINGS, "pooling")


def check_input(x: Any, vocab_size: int | None, *, step: bool) -> None:
    """x is int tokens [*batch, (T)] when ``vocab_size`` is set, else float [*batch, (T,) D]."""
    name = "x_t" if step else "x"
    rank = "[*batch]" if step else "[*batch, T]"
    if vocab_size is not None:
        if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(
                f"{name} must be int token ids of shape {rank} (vocab_size is set), got "
                f"{getattr(x, 'dtype', type(x))}"
            )
    elif step:
        checks.step_input(x, name)
    else:
        checks.sequence_input(x, name)


def check_states(states: Any, num_layers: int, name: str) -> Sequence[Any]:
    """``states`` is a list (or tuple) of ``num_layers`` per-layer states."""
    if not isinstance(states, list | tuple) or len(states) != num_layers:
        raise ValueError(
            f"{name} must be a list of {num_layers} per-layer states, got "
            f"{type(states).__name__} of length {len(states) if hasattr(states, '__len__') else '?'}"
        )
    return states


def shared_sequence_axis(layers: Sequence[Any]) -> str | None:
    """The one ``sequence_axis`` of all ``layers`` (None when none has one), else a ValueError:
    a stack shards time over one mesh axis in every block or in none."""
    axes = {sequence_axis_of(layer) for layer in layers}
    if len(axes) > 1:
        names = [sequence_axis_of(layer) for layer in layers]
        raise ValueError(
            f"the blocks' layers must shard time over the same mesh axis, got sequence_axis "
            f"{names} (block by block): a layer without it would run each device's chunk of time "
            f"as a sequence of its own"
        )
    return axes.pop() if axes else None


def stack_sequence(
    encoder: Callable[[Array], Array],
    blocks: Sequence[Callable[..., tuple[Any, Array]]],
    decoder: Callable[[Array], Array],
    x: Array,
    *,
    vocab_size: int | None,
    pooling: str | None,
    lengths: Array | None = None,
    resets: Array | None = None,
    initial_state: Sequence[Any] | None = None,
    return_state: bool = False,
    sequence_axis: str | None = None,
) -> Array | tuple[list[Any], Array]:
    """:class:`SequenceModel`'s call with the front-end's parts: ``encoder`` → each of
    ``blocks`` (block calls with the layers' keywords) → :func:`pool` → ``decoder``.
    ``sequence_axis``: the mesh axis the blocks' layers shard time over (pooling sums over it)."""
    check_input(x, vocab_size, step=False)
    h = encoder(x)
    if initial_state is not None:
        initial_state = check_states(initial_state, len(blocks), "initial_state")
    states = []
    for i, block in enumerate(blocks):
        s, h = block(
            h,
            initial_state=None if initial_state is None else initial_state[i],
            resets=resets,
            lengths=lengths,
            return_state=True,
        )
        states.append(s)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    y = decoder(pool(h, lengths, pooling, sequence_axis))
    return (states, y) if return_state else y


def stack_step(
    encoder: Callable[[Array], Array],
    blocks: Sequence[Callable[[Any, Array], tuple[Any, Array]]],
    decoder: Callable[[Array], Array],
    states: Sequence[Any],
    x_t: Array,
    *,
    vocab_size: int | None,
    pooling: str | None,
) -> tuple[list[Any], Array]:
    """:class:`SequenceModel`'s step with the front-end's parts (``blocks``: the blocks' steps)."""
    if pooling == "mean":
        raise ValueError("step is not defined for pooling='mean'; use pooling=None or 'last'")
    states = check_states(states, len(blocks), "states")
    check_input(x_t, vocab_size, step=True)
    h = encoder(x_t)
    new = []
    for step, s in zip(blocks, states):
        s, h = step(s, h)
        new.append(s)
    return new, decoder(h)
