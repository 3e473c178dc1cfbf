"""Normalisation layers for sequence models: layer, RMS and (padding-aware) batch norm.

Batch norm in a sequence model takes its statistics over batch *and* time, per feature. Padded
steps (t ≥ length) are masked out of the statistics, so what is written past the end of a
sequence never changes the mean, the variance or the running averages (``batch_stats``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from recurrent_zoo import _checks as checks

Array = jax.Array
NORMS = ("layer", "batch", "rms")


def make_norm(
    kind: str | None,
    *,
    name: str,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    dtype: Any = None,
    param_dtype: Any = None,
) -> nn.Module | None:
    """The flax norm ``kind`` ("layer", "batch", "rms") named ``name``; None for ``kind=None``."""
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
    if isinstance(norm, nn.BatchNorm):
        m = None if mask is None else mask[..., None]
        return norm(x, use_running_average=not train, mask=m)
    return norm(x)
