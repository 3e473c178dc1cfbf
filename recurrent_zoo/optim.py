"""Optimisers that treat the recurrent parameters apart.

The parameters that set a recurrence's memory — λ's raw parameters, the input normalisation γ and
the recurrent kernels — sit where the loss is sharpest (the paper's curse of memory), so they
usually get a smaller learning rate and no weight decay. :func:`param_labels` finds them by name;
:func:`make_optimizer` builds an optax transformation with one group per label::

    tx = rz.optim.make_optimizer(1e-3, total_steps=10_000, recurrent_lr_factor=0.25,
                                 weight_decay=0.05, clip_norm=1.0)

Which parameters are "recurrent" (every other one is "default"):

=============================  =============================================================
layer                          recurrent parameters
=============================  =============================================================
``rnn``, ``ln_rnn``            ``recurrent_kernel``
``gru``, ``lstm``              ``recurrent_kernel`` (``recurrent_bias`` is "default": it adds
                               to the gates but does not multiply h, so it does not set the
                               memory; it is a bias like ``input_bias``)
``crnn``, ``lru``              λ's two parameters (``nu_log``/``theta_log``, ``nu``/``theta``,
                               ``lambda_re``/``lambda_im`` or ``omega_nu``/``omega_theta``) and
                               ``gamma_log``
``mh_linear``                  ``A``
=============================  =============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from recurrent_zoo import parametrization

RECURRENT = "recurrent"
DEFAULT = "default"
OPTIMIZERS = ("adam", "sgd")

#: Leaf names of the recurrent parameters, λ's taken from every parametrisation.
RECURRENT_NAMES: frozenset[str] = frozenset(
    {n for p in parametrization.PARAMETRIZATIONS.values() for n in p.param_names}
    | {"gamma_log", "recurrent_kernel", "A"}
)


def _leaf_name(path: tuple[Any, ...]) -> str:
    # An nnx.Variable flattens through its ``value`` attribute: the name is the key before it.
    if (
        len(path) > 1
        and isinstance(path[-1], jax.tree_util.GetAttrKey)
        and path[-1].name == "value"
    ):
        path = path[:-1]
    key = path[-1] if path else None
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def param_labels(params: Any) -> Any:
    """A pytree like ``params`` with "recurrent" or "default" at every leaf (by the leaf's name).

    Works on the "params" collection of any model built from zoo layers (a layer, a block, a
    :class:`~recurrent_zoo.SequenceModel`, or your own module holding them), and on the
    parameters of a Flax NNX model: ``nnx.state(model, nnx.Param)`` (labels as an ``nnx.State``
    of the same structure, which ``optax.multi_transform`` accepts) or its pure dict
    (``nnx.to_pure_dict``).
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, _: RECURRENT if _leaf_name(path) in RECURRENT_NAMES else DEFAULT, params
    )


def learning_rate_schedule(
    learning_rate: float,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    end_learning_rate: float = 1e-7,
) -> optax.Schedule:
    """Linear warm-up from 0 to ``learning_rate`` over ``warmup_steps``, then cosine decay to
    ``end_learning_rate`` at ``total_steps`` (constant after the warm-up when ``total_steps`` is
    None). The paper's teacher–student runs use no warm-up and decay to 1e-7."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
    if total_steps is None:
        if warmup_steps == 0:
            return optax.constant_schedule(learning_rate)
        return optax.linear_schedule(0.0, learning_rate, warmup_steps)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must exceed warmup_steps, got total_steps={total_steps} and "
            f"warmup_steps={warmup_steps}"
        )
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup_steps else learning_rate,
        learning_rate,
        warmup_steps,
        total_steps,
        end_learning_rate,
    )


def make_optimizer(
    learning_rate: float = 1e-3,
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    end_learning_rate: float = 1e-7,
    recurrent_lr_factor: float = 1.0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    optimizer: str = "adam",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    labels: Any | Callable[[Any], Any] = param_labels,
) -> optax.GradientTransformation:
    """An optax transformation with a "default" and a "recurrent" parameter group.

        g ← clip(g, clip_norm)                               (global norm, over all parameters)
        default:   Δ = −η_t · (adam(g) + weight_decay · p)   (AdamW; SGD: g instead of adam(g))
        recurrent: Δ = −recurrent_lr_factor · η_t · adam(g)  (no weight decay)

    η_t is :func:`learning_rate_schedule` (warm-up + cosine).

    Args:
      learning_rate: peak learning rate η.
      total_steps, warmup_steps, end_learning_rate: the schedule.
      recurrent_lr_factor: multiplies η for the recurrent parameters.
      weight_decay: decoupled weight decay of the default parameters.
      clip_norm: clip the gradient to this global norm (None: no clipping).
      optimizer: "adam" or "sgd".
      b1, b2, eps: Adam's.
      labels: a label pytree, or a function of the params giving one (default
        :func:`param_labels`).

    The parameters may be a linen "params" collection or an NNX ``nnx.State`` of
    ``nnx.Param``s (e.g. for ``nnx.Optimizer(model, tx, wrt=nnx.Param)``).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if not recurrent_lr_factor > 0:
        raise ValueError(f"recurrent_lr_factor must be > 0, got {recurrent_lr_factor!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be None or > 0, got {clip_norm!r}")
    schedule = learning_rate_schedule(learning_rate, total_steps, warmup_steps, end_learning_rate)

    def group(lr: optax.Schedule, decay: float) -> optax.GradientTransformation:
        parts = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps)] if optimizer == "adam" else []
        if decay:
            parts.append(optax.add_decayed_weights(decay))
        parts.append(optax.scale_by_learning_rate(lr))
        return optax.chain(*parts)

    recurrent_schedule = lambda step: recurrent_lr_factor * schedule(step)
    tx = optax.multi_transform(
        {DEFAULT: group(schedule, weight_decay), RECURRENT: group(recurrent_schedule, 0.0)},
        labels,
    )
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx
