"""Signal propagation at initialisation: activity per layer and gradient magnitude per group.

The paper's Fig. 5 measures, on a deep recurrent network at initialisation, how large each
layer's outputs are (E[y²], "activity") and how large the loss gradients are for each group of
parameters (E[g²] over the group's entries). Both work on any flax model:

>>> act = activity(model, variables, x, modules=rz.RecurrentLayer)
>>> grads = gradient_by_group(loss_fn, variables["params"], name_groups(lam=("lambda_re", "lambda_im")))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo.diagnostics.groups import group_leaves

Array = jax.Array
PyTree = Any


def mean_square(x: Array) -> Array:
    """E[|x|²] over every entry (|·| for complex arrays)."""
    x = jnp.asarray(x)
    return jnp.mean(jnp.real(x * jnp.conj(x)) if jnp.iscomplexobj(x) else jnp.square(x))


def _last_output(out: Any) -> Any:
    # Flax's convention for stateful calls is (carry, y); the activity is y's.
    return out[-1] if isinstance(out, tuple) else out


def activity(
    model: nn.Module,
    variables: PyTree,
    *args: Any,
    modules: type | tuple[type, ...] | Callable[[nn.Module], bool] = nn.Module,
    output: Callable[[Any], Array] = _last_output,
    method_name: str = "__call__",
    **kwargs: Any,
) -> dict[str, Array]:
    """Mean squared output E[|y|²] of every submodule selected by ``modules``, by path.

    Runs ``model.apply(variables, *args, capture_intermediates=..., **kwargs)`` and averages the
    square of each captured call's output over all its entries (batch, time and features). A
    module called several times gives the average over its calls.

    Args:
      model, variables, args, kwargs: as for ``model.apply`` (e.g. ``train=True,
        mutable=["batch_stats"]`` for batch statistics).
      modules: module class(es) to record, or a predicate ``module -> bool``. The top-level model
        itself is never recorded.
      output: maps a call's return value to the array measured (default: the last element of a
        tuple, the ``y`` of ``(state, y)``, else the value itself).
      method_name: the method whose outputs are recorded.

    Returns:
      ``{"blocks_0/layer": E[y²], ...}`` in call order, scalars.
    """
    if isinstance(modules, type | tuple):
        classes = modules
        modules = lambda m: isinstance(m, classes)
    if not callable(modules):
        raise TypeError(
            f"modules must be a class, a tuple of classes or a predicate, got {modules}"
        )

    def keep(mdl: nn.Module, name: str) -> bool:
        return (
            name == method_name and mdl.scope is not None and bool(mdl.scope.path) and modules(mdl)
        )

    _, state = model.apply(variables, *args, capture_intermediates=keep, **kwargs)
    captured = state["intermediates"]
    found: dict[str, Array] = {}

    def visit(tree: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in tree.items():
            if key == method_name and isinstance(value, tuple):
                found["/".join(prefix)] = jnp.mean(
                    jnp.stack([mean_square(output(v)) for v in value])
                )
            elif isinstance(value, Mapping):
                visit(value, (*prefix, key))

    visit(captured, ())
    return found


def group_mean_square(tree: PyTree, grouping: Callable[[str], str] | PyTree) -> dict[str, Array]:
    """E[|v|²] over all entries of the leaves of each group.

    ``grouping``: a function ``path -> group name`` (paths as ``"blocks_0/layer/nu_log"``) or a
    pytree of group names with the structure of ``tree`` (e.g. optax ``multi_transform`` labels,
    such as :func:`recurrent_zoo.optim.param_labels`). Jit-compatible.

    Groups are weighted by entry count: a group of a 256×256 kernel and a bias of 256 gives
    (Σ kernel² + Σ bias²) / (65536 + 256).
    """
    sums: dict[str, Array] = {}
    counts: dict[str, int] = {}
    for g, leaf in group_leaves(tree, grouping):
        leaf = jnp.asarray(leaf)
        sums[g] = sums.get(g, 0.0) + leaf.size * mean_square(leaf)
        counts[g] = counts.get(g, 0) + leaf.size
    return {g: sums[g] / counts[g] for g in sums}


def gradient_by_group(
    loss_fn: Callable[[PyTree], Array], params: PyTree, grouping: Callable[[str], str] | PyTree
) -> dict[str, Array]:
    """Mean squared gradient E[(∂L/∂θ)²] over the entries of each parameter group.

    Args:
      loss_fn: ``params -> scalar loss``.
      params: the parameters (any pytree).
      grouping: ``path -> group name``, with paths as ``"blocks_0/layer/nu_log"`` (see
        :func:`name_groups`), or a pytree of group names shaped like ``params``.

    Returns:
      ``{group: E[g²]}``, scalars.
    """
    return group_mean_square(jax.grad(loss_fn)(params), grouping)
