"""Normalisation layers for sequence models: layer, RMS and (padding-aware) batch norm.

Batch norm in a sequence model takes its statistics over batch *and* time, per feature. Padded
steps (t ≥ length) are masked out of the statistics, so what is written past the end of a
sequence never changes the mean, the variance or the running averages (``batch_stats``).

With time sharded over a mesh axis (a block whose layer has a ``sequence_axis``) each device
holds a chunk of time, and the statistics are sums over every chunk divided by the global count
of valid steps (:func:`batch_moments`), never a mean of per-device means, which would weigh a
chunk of mostly padding like a full one. :class:`SequenceBatchNorm` is that batch norm, with
``nn.BatchNorm``'s variables.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan

Array = jax.Array
NORMS = ("layer", "batch", "rms")


def batch_moments(x: Array, mask: Array | None, sequence_axis: str | None) -> tuple[Array, Array]:
    """Per-feature mean and variance of x [..., D] over every other axis, padding left out.

    ``mean = Σ m·x / Σ m``, ``var = max(0, Σ m·x² / Σ m − mean²)`` (in float32 at least), the sums
    also over the devices of mesh axis ``sequence_axis`` where a map binds it, so that a sequence
    sharded over time gets the statistics of the whole sequence.

    Args:
      x: features on the last axis.
      mask: bool, x's shape without the feature axis (False: padding), or None.
      sequence_axis: the mesh axis time is sharded over, or None.

    Returns:
      ``(mean, var)``, each [D].
    """
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x = x.astype(dtype)
    axes = tuple(range(x.ndim - 1))
    if mask is None:
        mask = jnp.ones(x.shape[:-1], bool)
    m = mask[..., None]
    sums = jnp.stack(
        [
            jnp.sum(jnp.where(m, x, 0), axes),
            jnp.sum(jnp.where(m, jnp.square(x), 0), axes),
            jnp.broadcast_to(jnp.sum(mask, dtype=dtype), x.shape[-1:]),
        ]
    )
    if sequence_axis is not None and scan.bound_axis_size(sequence_axis) is not None:
        sums = jax.lax.psum(sums, sequence_axis)
    # A batch of nothing but padding has no statistics; its (zero) sums give mean 0, var 0.
    count = jnp.maximum(sums[2], 1)
    mean = sums[0] / count
    return mean, jnp.maximum(0.0, sums[1] / count - jnp.square(mean))


def normalize(
    x: Array, mean: Array, var: Array, scale: Array, bias: Array, epsilon: float, dtype: Any
) -> Array:
    """``(x − mean) · rsqrt(var + ε) · scale + bias`` (per feature, on the last axis) in ``dtype``."""
    mul = jax.lax.rsqrt(var + epsilon) * scale
    return jnp.asarray((x - mean) * mul + bias, dtype)


class SequenceBatchNorm(nn.Module):
    """Batch norm over batch and time, per feature, for a sequence sharded over a mesh axis.

    The variables are ``nn.BatchNorm``'s (params ``scale``, ``bias``; batch_stats ``mean``,
    ``var``, float32), so checkpoints are interchangeable; the statistics are
    :func:`batch_moments` (sums over the devices of ``sequence_axis`` where a map binds it).

    Attributes:
      sequence_axis: the mesh axis time is sharded over (None: statistics of the local x).
      momentum: of the running averages.
      epsilon: added to the variance.
      dtype: of the output (None: x's and the parameters' promoted).
      param_dtype: of ``scale`` and ``bias``.
    """

    sequence_axis: str | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: Array, use_running_average: bool = False, *, mask: Array | None = None
    ) -> Array:
        """x [..., D] → [..., D]; ``mask`` bool x's shape without D (or with a trailing 1)."""
        d = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((d,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((d,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (d,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (d,), self.param_dtype)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            if mask is not None and mask.ndim == x.ndim:
                mask = mask[..., 0]
            mean, var = batch_moments(x, mask, self.sequence_axis)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        dtype = self.dtype or jnp.result_type(x, scale)
        return normalize(x, mean, var, scale, bias, self.epsilon, dtype)


def make_norm(
    kind: str | None,
    *,
    name: str,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    dtype: Any = None,
    param_dtype: Any = None,
    sequence_axis: str | None = None,
) -> nn.Module | None:
    """The flax norm ``kind`` ("layer", "batch", "rms") named ``name``; None for ``kind=None``.

    With a ``sequence_axis`` batch norm is :class:`SequenceBatchNorm` over that axis (layer and
    RMS norm work per step and need nothing)."""
    if kind is None:
        return None
    checks.choice(kind, NORMS, "norm")
    kw: dict[str, Any] = {"epsilon": epsilon, "name": name}
    if dtype is not None:
        kw["dtype"] = dtype
    if param_dtype is not None:
        kw["param_dtype"] = param_dtype
    if kind == "layer":
        return nn.LayerNorm(**kw)
    if kind == "rms":
        return nn.RMSNorm(**kw)
    if sequence_axis is not None:
        return SequenceBatchNorm(sequence_axis, momentum=momentum, **kw)
    # axis=-1: one mean/variance per feature, reduced over every other axis (batch and time).
    return nn.BatchNorm(momentum=momentum, axis=-1, **kw)


def apply_norm(norm: nn.Module | None, x: Array, *, train: bool, mask: Array | None) -> Array:
    """Applies ``norm`` to x [..., D].

    Args:
      norm: a module from :func:`make_norm`, or None (identity).
      x: features on the last axis.
      train: batch norm uses batch statistics and updates its running averages (needs
        ``mutable=["batch_stats"]``); otherwise it uses the running averages.
      mask: bool, x's shape without the feature axis; False entries (padding) are left out of
        batch norm's statistics. Layer and RMS norm work per step and ignore it.
    """
    if norm is None:
        return x
    if isinstance(norm, nn.BatchNorm | SequenceBatchNorm):
        m = None if mask is None else mask[..., None]
        return norm(x, use_running_average=not train, mask=m)
    return norm(x)
