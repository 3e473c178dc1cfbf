"""Adam's effective learning rate per parameter, summarised per parameter group.

Adam moves a parameter by lr · m̂ / (√v̂ + ε), with m̂, v̂ the bias-corrected running means of the
gradient and of its square. Its *effective learning rate* is the step it takes for a unit gradient,

    η_eff = lr / (√(v̂ + ε_root) + ε),   v̂ = ν / (1 − β₂^count),

read from an optax Adam state. Where gradients are large and stay large (the recurrent matrix of a
dense RNN with long memory), v̂ is large and Adam's steps there are small: the paper finds η_eff on a
dense RNN's A orders of magnitude below that on a diagonal RNN's λ (Zucchet & Orvieto 2024, Fig. 4).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recurrent_zoo.diagnostics.groups import group_leaves

Array = jax.Array
PyTree = Any

__all__ = ["adam_effective_learning_rates", "group_summary"]


def _adam_states(opt_state: PyTree) -> list[optax.ScaleByAdamState]:
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
    return [s for s in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(s)]


def adam_effective_learning_rates(
    opt_state: PyTree,
    learning_rate: float | Callable[[Array], Array],
    *,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> PyTree:
    """lr / (√(v̂ + eps_root) + eps) per parameter, from an optax Adam/AdamW state.

    Args:
      opt_state: the state of an optax optimiser holding exactly one ``ScaleByAdamState``
        (``optax.adam``, ``optax.adamw``, a chain with clipping or a schedule, ...). For
        ``optax.multi_transform`` pass the inner state of one group. For Flax NNX it may be
        an ``nnx.Optimizer`` (or its ``opt_state``), or the state ``tx.init`` gave for an
        ``nnx.State`` of parameters.
      learning_rate: the peak value or the schedule the optimiser was built with; a schedule is
        evaluated at the state's step count (the step about to be taken).
      b2, eps, eps_root: the optimiser's own values (optax's defaults here).

    Returns:
      a pytree like the parameters (an ``nnx.State`` for NNX ones), each leaf the effective
      learning rate of each entry (float32).

    Raises:
      ValueError: no or several Adam states, no step taken yet, or bad hyper-parameters.
    """
    nnx = sys.modules.get("flax.nnx")  # NNX objects exist only where flax.nnx was imported
    if nnx is not None and isinstance(opt_state, nnx.Optimizer):
        opt_state = opt_state.opt_state
    states = _adam_states(opt_state)
    if len(states) != 1:
        raise ValueError(
            f"opt_state must hold exactly one optax ScaleByAdamState, found {len(states)}; "
            "for multi_transform pass the inner state of one group"
        )
    if not 0.0 <= b2 < 1.0:
        raise ValueError(f"b2 must lie in [0, 1), got {b2}")
    if eps < 0 or eps_root < 0:
        raise ValueError(f"eps and eps_root must be >= 0, got eps={eps}, eps_root={eps_root}")
    state = states[0]
    count = state.count
    if nnx is not None and isinstance(
        count, nnx.Variable
    ):  # nnx.Optimizer wraps its arrays in OptArray variables
        count = count[...]
    try:
        if int(count) < 1:
            raise ValueError(
                "opt_state has taken no step yet (count = 0): v̂ is undefined before the first "
                "update"
            )
    except jax.errors.ConcretizationTypeError:
        pass  # traced under jit: the caller vouches for count ≥ 1
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    lr = jnp.asarray(lr, jnp.float32)
    correction = 1 - jnp.asarray(b2, jnp.float32) ** count.astype(jnp.float32)

    def one(nu: Array) -> Array:
        v_hat = nu.astype(jnp.float32) / correction
        return lr / (jnp.sqrt(v_hat + eps_root) + eps)

    return jax.tree.map(one, state.nu)


def group_summary(
    tree: PyTree,
    groups: PyTree | Callable[[str], str] | None = None,
) -> dict[str, dict[str, float]]:
    """Statistics of the entries of a pytree of arrays, per parameter group.

    Args:
      tree: pytree of arrays (e.g. the output of :func:`adam_effective_learning_rates`, or
        squared gradients); an ``nnx.State``'s leaves are named as in its pure dict.
      groups: how entries are grouped: ``None`` by each leaf's own name (the last key of its
        path, e.g. ``"A"``, ``"lambda_re"``); a function of the leaf's path
        (``"params/layer/A"``) returning a group name; or a pytree of group names with the
        structure of ``tree`` (e.g. optax ``multi_transform`` labels).

    Returns:
      ``{group: {"count", "mean", "median", "geomean", "min", "max"}}`` with Python floats;
      ``geomean`` (the geometric mean of the absolute values) suits quantities spread over
      orders of magnitude.
    """
    collected: dict[str, list[np.ndarray]] = {}
    for name, leaf in group_leaves(tree, groups, "groups"):
        values = np.asarray(leaf, np.float64).ravel()
        if values.size:
            collected.setdefault(str(name), []).append(values)
    out = {}
    for name, parts in collected.items():
        v = np.concatenate(parts)
        a = np.abs(v)
        out[name] = {
            "count": int(v.size),
            "mean": float(np.mean(v)),
            "median": float(np.median(v)),
            "geomean": float(np.exp(np.mean(np.log(a[a > 0])))) if np.any(a > 0) else 0.0,
            "min": float(np.min(v)),
            "max": float(np.max(v)),
        }
    return out
