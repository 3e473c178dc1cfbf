"""Tiny Flax NNX models and a tiny task shared by the NNX tests (training, optimiser labels,
diagnostics), built from ``flax.nnx`` parts and zoo layers wrapped by ``nnx.bridge.ToNNX``.

Everything here is small enough to compile in about a second on a CPU.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

import recurrent_zoo as rz

D_IN, D_MODEL, D_OUT, BATCH, LENGTH = 3, 4, 1, 4, 8


def bridged(layer: nn.Module, sample: jax.Array, rngs: nnx.Rngs) -> nnx.Module:
    """``layer`` (linen) as an NNX module, its variables created from ``sample``'s shapes."""
    module = nnx.bridge.ToNNX(layer, rngs=rngs)
    nnx.bridge.lazy_init(module, sample)
    return module


class TinyModel(nnx.Module):
    """Linear (no bias) → BatchNorm → LRU (a zoo layer through ToNNX) → Dropout → LayerNorm → Linear.

    [B, T, d_in] → [B, T, d_out]; ``lengths``/``resets`` go to the LRU. Its parameter names
    include the LRU's (``nu_log``, ``theta_log``, ``gamma_log``, ...), its batch norm has
    ``nnx.BatchStat``s and its dropout an RNG stream.
    """

    def __init__(
        self,
        d_in: int = D_IN,
        d_model: int = D_MODEL,
        d_out: int = D_OUT,
        *,
        dropout: float = 0.1,
        rngs: nnx.Rngs,
    ) -> None:
        # No bias before batch norm: its gradient is zero up to rounding, which Adam would
        # blow up to full steps, so runs on different devices would part ways.
        self.encoder = nnx.Linear(d_in, d_model, use_bias=False, rngs=rngs)
        # A small momentum so that a few steps move the running averages visibly.
        self.norm = nnx.BatchNorm(d_model, momentum=0.5, rngs=rngs)
        self.layer = bridged(rz.LRU(hidden_size=d_model), jnp.zeros((1, 1, d_model)), rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.decoder = nnx.Linear(d_model, d_out, rngs=rngs)

    def __call__(
        self, x: jax.Array, lengths: jax.Array | None = None, resets: jax.Array | None = None
    ) -> jax.Array:
        h = self.norm(self.encoder(x))
        h = h + self.dropout(self.layer(h, lengths=lengths, resets=resets))
        return self.decoder(self.out_norm(h))


def tiny_task(batch_size: int = BATCH, length: int = LENGTH):
    """``(batch_fn, loss_fn)`` of a regression: the target is a leaky running sum of the
    inputs' first feature, y_t = 0.8 y_{t−1} + x_t[0]."""

    def batch_fn(key: jax.Array, step: int) -> dict[str, Any]:
        x = jax.random.normal(key, (batch_size, length, D_IN))
        _, y = jax.lax.scan(
            lambda h, xt: (0.8 * h + xt, 0.8 * h + xt), jnp.zeros(batch_size), x[..., 0].T
        )
        return {"inputs": x, "targets": y.T[..., None]}

    def loss_fn(predictions: jax.Array, batch: dict[str, Any]) -> jax.Array:
        return jnp.mean((predictions - batch["targets"]) ** 2)

    return batch_fn, loss_fn


def linen_stack(hidden: int = D_MODEL) -> nn.Module:
    """Dense → LRU → Dense as a linen ``Sequential`` (the twin of :func:`nnx_stack`)."""
    return nn.Sequential([nn.Dense(hidden), rz.LRU(hidden_size=hidden), nn.Dense(D_OUT)])


def nnx_stack(linen: nn.Module, variables: dict[str, Any]) -> nnx.Sequential:
    """The NNX twin of a :func:`linen_stack`: each linen part through ToNNX, holding the very
    same variables (so every number matches the linen model's)."""
    parts = []
    for i, layer in enumerate(linen.layers):
        module = nnx.bridge.ToNNX(layer.clone(parent=None), rngs=nnx.Rngs(0))
        own = variables["params"][f"layers_{i}"]
        nnx.bridge.lazy_init(module, jnp.zeros((1, 1, _in_features(own))))
        params = nnx.state(module, nnx.Param)
        nnx.replace_by_pure_dict(params, own)
        nnx.update(module, params)
        parts.append(module)
    return nnx.Sequential(*parts)


def _in_features(params: dict[str, Any]) -> int:
    if "kernel" in params:
        return params["kernel"].shape[0]
    return params["B_re"].shape[1]
