"""Flax NNX twins of :class:`recurrent_zoo.RecurrentBlock` and :class:`recurrent_zoo.SequenceModel`.

The data paths are the linen modules' own (:func:`recurrent_zoo.models.blocks.residual`,
:func:`~recurrent_zoo.models.sequence_model.stack_sequence`, ...) called with NNX submodules. The
submodules carry the linen names (a block's ``layer``, ``norm``, ``mlp_norm``, ``out1``,
``out2``/``out``, ``dropout``; a model's ``encoder``, ``blocks_0``, ..., ``decoder``), so
``nnx.state`` has the linen variables' tree.

Train and eval follow NNX: ``.train()`` (the default after construction) turns dropout on and
makes batch norm use and update batch statistics, ``.eval()`` turns both off; ``step`` always
runs in eval mode, as linen's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from recurrent_zoo import _checks as checks
from recurrent_zoo.models import blocks as linen_blocks
from recurrent_zoo.models import norms
from recurrent_zoo.models import sequence_model as linen_model
from recurrent_zoo.nnx.layers import LAYERS, RecurrentLayer, make_layer

Array = jax.Array
Dtype = Any


def _norm(kind: str | None, d: int, epsilon: float, momentum: float, dtype, param_dtype, rngs):
    """The NNX norm ``kind`` over d features (None for ``kind=None``), as ``models.make_norm``."""
    if kind is None:
        return None
    kw = dict(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if kind == "layer":
        return nnx.LayerNorm(d, **kw)
    if kind == "rms":
        return nnx.RMSNorm(d, **kw)
    # One mean/variance per feature, reduced over every other axis (batch and time).
    return nnx.BatchNorm(d, momentum=momentum, axis=-1, **kw)


def _sequence_batch_norm(
    module: nnx.BatchNorm, x: Array, mask: Array | None, axis: str, eval_mode: bool
) -> Array:
    """``module`` (an ``nnx.BatchNorm``) on x [..., D] with the statistics of
    :func:`recurrent_zoo.models.norms.batch_moments` over the mesh axis ``axis`` as
    ``SequenceBatchNorm`` takes them (its running averages updated in training mode)."""
    if eval_mode or module.use_running_average:
        mean, var = module.mean[...], module.var[...]
    else:
        mean, var = norms.batch_moments(x, mask, axis)
        mu = module.momentum
        module.mean.value = mu * module.mean[...] + (1 - mu) * mean
        module.var.value = mu * module.var[...] + (1 - mu) * var
    dtype = module.dtype or jnp.result_type(x, module.scale[...])
    return norms.normalize(x, mean, var, module.scale[...], module.bias[...], module.epsilon, dtype)


def _output_size(layer: nnx.Module, d: int) -> int:
    """The layer's output feature size for inputs of d features, by abstract evaluation."""
    out = jax.eval_shape(lambda x: layer(x), jax.ShapeDtypeStruct((1, 1, d), jnp.float32))
    return int(out.shape[-1])


class RecurrentBlock(nnx.Module):
    """NNX twin of :class:`recurrent_zoo.RecurrentBlock`: a layer inside a residual block.

    ``u = layer(norm(x)); v = activation(u); y = x + dropout(out1(mlp_norm(v)) · σ(out2(mlp_norm(v))))``
    with ``prenorm=True`` and ``mlp="glu"``; see the linen block for the other settings.
    Shapes: x [*batch, T, d_model] → y [*batch, T, d_model]; the state is the layer's.

    The settings are the linen block's; ``d_model`` (the residual stream's width) defaults to the
    layer's ``in_features``. Afterwards ``block.norm`` and ``block.dropout`` are the submodules
    (the norm, or None; ``nnx.Dropout``), as their parameters are named in linen.
    """

    def __init__(
        self,
        layer: nnx.Module,
        *,
        d_model: int | None = None,
        norm: str | None = "layer",
        mlp: str | None = "glu",
        dropout: float = 0.0,
        prenorm: bool = True,
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        activation: Callable[[Array], Array] = nn.gelu,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if not isinstance(layer, nnx.Module):
            raise TypeError(f"layer must be an nnx Module (a zoo layer), got {type(layer)}")
        linen_blocks.check_settings(norm, mlp, dropout)
        built = getattr(layer, "in_features", None)
        if d_model is None:
            if built is None:
                raise ValueError("d_model must be given for a layer without in_features")
            d_model = built
        checks.positive_int(d_model, "d_model")
        if built is not None and built != d_model:
            raise ValueError(
                f"d_model={d_model} but the layer was built with in_features={built}: the block "
                f"feeds the layer its d_model-wide input"
            )
        self.d_model = d_model
        self.mlp = mlp
        self.prenorm = prenorm
        self.activation = activation
        self.layer = layer
        make = lambda d: _norm(norm, d, epsilon, momentum, dtype, param_dtype, rngs)
        self.norm = make(d_model)
        if mlp is not None:
            # The GLU (or Dense) and its norm read the layer's outputs.
            d_out = _output_size(layer, d_model)
            if prenorm and norm is not None:
                self.mlp_norm = make(d_out)
            kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            if mlp == "glu":
                self.out1 = nnx.Linear(d_out, d_model, **kw)
                self.out2 = nnx.Linear(d_out, d_model, **kw)
            else:
                self.out = nnx.Linear(d_out, d_model, **kw)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> Any:
        """The layer's zero state for inputs with leading dims ``batch_shape``."""
        return self.layer.initial_state(batch_shape)

    def _residual(
        self, x: Array, run_layer: Callable[[Array], tuple[Any, Array]], mask, eval_mode: bool
    ) -> tuple[Any, Array]:
        """:func:`recurrent_zoo.models.blocks.residual` with this block's submodules; the
        modules' own modes, or eval mode throughout with ``eval_mode``."""

        axis = linen_blocks.sequence_axis_of(self.layer)

        def norm(name: str) -> Callable[[Array], Array] | None:
            module = getattr(self, name, None)
            if not isinstance(module, nnx.BatchNorm):
                return module
            if axis is not None:
                return lambda h: _sequence_batch_norm(module, h, mask, axis, eval_mode)
            m = None if mask is None else mask[..., None]
            return lambda h: module(h, use_running_average=True if eval_mode else None, mask=m)

        return linen_blocks.residual(
            x,
            run_layer,
            norm=norm,
            dense=lambda name: getattr(self, name),
            dropout=lambda h: self.dropout(h, deterministic=True if eval_mode else None),
            mlp=self.mlp,
            prenorm=self.prenorm,
            activation=self.activation,
        )

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
        """Runs the block over x [*batch, T, d_model]; arguments as for the layers.

        Returns y [*batch, T, d_model], or ``(state, y)`` when ``return_state``.
        """
        return linen_blocks.block_sequence(
            self.layer,
            lambda h, run_layer, mask: self._residual(h, run_layer, mask, False),
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=return_state,
        )

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step, ``state, x_t [*batch, d_model] -> (state, y_t [*batch, d_model])``, in eval
        mode (no dropout, batch norm from its running averages) whatever the module's mode."""
        return linen_blocks.block_step(
            self.layer.step,
            lambda h, run_layer: self._residual(h, run_layer, None, True),
            state,
            x_t,
        )


LayerSpec = str | type | Callable[[int, nnx.Rngs], nnx.Module]


class SequenceModel(nnx.Module):
    """NNX twin of :class:`recurrent_zoo.SequenceModel`: encoder → ``num_layers`` ×
    :class:`RecurrentBlock` → [pooling] → decoder.

    Example::

        model = rz.nnx.SequenceModel("lru", 4, 64, 10, in_features=3, rngs=nnx.Rngs(0))
        y = model(x)                                             # x [B, T, 3] → [B, T, 10]
        states, y_t = model.step(model.initial_state(B), x[:, 0])

    The settings are the linen model's, with ``layer`` one of: a name in ``rz.nnx.LAYERS``
    (built with ``hidden_size``, ``dtype``, ``param_dtype`` and ``layer_kwargs``), a twin class
    (the same), or a factory ``(d_model, rngs) -> layer`` called once per block. Eager
    construction needs ``in_features`` (D_in) unless ``vocab_size`` is set (int token inputs).
    """

    def __init__(
        self,
        layer: LayerSpec,
        num_layers: int,
        d_model: int,
        out_features: int,
        *,
        in_features: int | None = None,
        vocab_size: int | None = None,
        pooling: str | None = None,
        hidden_size: int | None = None,
        layer_kwargs: Mapping[str, Any] | None = None,
        norm: str | None = "layer",
        mlp: str | None = "glu",
        dropout: float = 0.0,
        prenorm: bool = True,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        linen_model.check_settings(num_layers, d_model, out_features, vocab_size, pooling)
        if isinstance(layer, str):
            checks.choice(layer, sorted(LAYERS), "layer")
        elif not callable(layer):
            raise TypeError(
                f"layer must be a name in rz.nnx.LAYERS, a layer class or a factory "
                f"(d_model, rngs) -> layer, got {type(layer)}"
            )
        if (in_features is None) == (vocab_size is None):
            raise ValueError(
                "give exactly one of in_features (float inputs [*batch, T, in_features]) and "
                f"vocab_size (int tokens [*batch, T]), got in_features={in_features!r} and "
                f"vocab_size={vocab_size!r}"
            )
        self.num_layers = num_layers
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.in_features = in_features
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if vocab_size is not None:
            self.encoder = nnx.Embed(vocab_size, d_model, **kw)
        else:
            checks.positive_int(in_features, "in_features")
            self.encoder = nnx.Linear(in_features, d_model, **kw)
        layer_kw = {"hidden_size": hidden_size or d_model}
        if isinstance(layer, str | type):
            layer_kw.update(dtype=dtype, param_dtype=param_dtype)
            layer_kw.update(layer_kwargs or {})
        for i in range(num_layers):
            block_layer = self._new_layer(layer, d_model, layer_kw, rngs)
            block = RecurrentBlock(
                block_layer, d_model=d_model, norm=norm, mlp=mlp, dropout=dropout,
                prenorm=prenorm, **kw,
            )  # fmt: skip
            setattr(self, f"blocks_{i}", block)
        self.decoder = nnx.Linear(d_model, out_features, **kw)

    @staticmethod
    def _new_layer(layer: LayerSpec, d: int, kw: dict[str, Any], rngs: nnx.Rngs) -> nnx.Module:
        if isinstance(layer, str):
            return make_layer(layer, d, rngs=rngs, **kw)
        if isinstance(layer, type):
            if not issubclass(layer, RecurrentLayer):
                raise TypeError(
                    f"a layer class must be an rz.nnx layer (a twin in rz.nnx.LAYERS), got {layer}"
                )
            return layer(d, rngs=rngs, **kw)
        module = layer(d, rngs)
        if not isinstance(module, nnx.Module):
            raise TypeError(f"the layer factory must return an nnx Module, got {type(module)}")
        return module

    @property
    def blocks(self) -> list[RecurrentBlock]:
        """The blocks, in order (attributes ``blocks_0``, ``blocks_1``, ... as in linen)."""
        return [getattr(self, f"blocks_{i}") for i in range(self.num_layers)]

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> list[Any]:
        """Zero states, one per block, for inputs with leading dims ``batch_shape``."""
        return [b.initial_state(batch_shape) for b in self.blocks]

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        initial_state: Sequence[Any] | None = None,
        return_state: bool = False,
    ) -> Array | tuple[list[Any], Array]:
        """Runs the model over a sequence (dropout and batch statistics in train mode).

        Args:
          x: float [*batch, T, in_features], or int tokens [*batch, T] with ``vocab_size``.
          lengths: int [*batch], right padding; pooling and batch norm respect it.
          resets: bool [*batch, T], passed to every layer.
          initial_state: list of per-layer states (zeros when None).
          return_state: also return the list of per-layer states after the last valid step.

        Returns:
          y [*batch, T, out_features] (pooling None) or [*batch, out_features]; with
          ``return_state``, ``(states, y)``.
        """
        return linen_model.stack_sequence(
            self.encoder,
            self.blocks,
            self.decoder,
            x,
            vocab_size=self.vocab_size,
            pooling=self.pooling,
            lengths=lengths,
            resets=resets,
            initial_state=initial_state,
            return_state=return_state,
            sequence_axis=linen_model.shared_sequence_axis([b.layer for b in self.blocks]),
        )

    def step(self, states: Sequence[Any], x_t: Array) -> tuple[list[Any], Array]:
        """One step through the whole stack, in eval mode: ``states`` (list of per-layer states),
        x_t float [*batch, in_features] or int [*batch] → ``(states, y_t [*batch, out_features])``."""
        return linen_model.stack_step(
            self.encoder,
            [b.step for b in self.blocks],
            self.decoder,
            states,
            x_t,
            vocab_size=self.vocab_size,
            pooling=self.pooling,
        )
