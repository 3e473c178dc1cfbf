"""Signal propagation at initialisation: activity per layer and gradient magnitude per group.

The paper's Fig. 5 measures, on a deep recurrent network at initialisation, how large each
layer's outputs are (E[y²], "activity") and how large the loss gradients are for each group of
parameters (E[g²] over the group's entries). Both work on any flax model, linen or NNX:

>>> act = activity(model, variables, x, modules=rz.RecurrentLayer)
>>> grads = gradient_by_group(loss_fn, variables["params"], name_groups(lam=("lambda_re", "lambda_im")))
>>> act = activity(nnx_model, None, x, modules=nnx.Linear)       # an NNX module holds its state
>>> grads = gradient_by_group(nnx_loss_fn, nnx.state(nnx_model, nnx.Param), param_labels)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo.diagnostics.groups import group_leaves

if TYPE_CHECKING:
    from flax import nnx

Array = jax.Array
PyTree = Any


def mean_square(x: Array) -> Array:
    """E[|x|²] over every entry (|·| for complex arrays)."""
    x = jnp.asarray(x)
    return jnp.mean(jnp.real(x * jnp.conj(x)) if jnp.iscomplexobj(x) else jnp.square(x))


def _last_output(out: Any) -> Any:
    # Flax's convention for stateful calls is (carry, y); the activity is y's.
    return out[-1] if isinstance(out, tuple) else out


Selection = type | tuple[type, ...] | Callable[[Any], bool] | None


def activity(
    model: nn.Module | nnx.Module,
    variables: PyTree | None,
    *args: Any,
    modules: Selection = None,
    output: Callable[[Any], Array] = _last_output,
    method_name: str = "__call__",
    **kwargs: Any,
) -> dict[str, Array]:
    """Mean squared output E[|y|²] of every submodule selected by ``modules``, by path.

    Linen: runs ``model.apply(variables, *args, capture_intermediates=..., **kwargs)``. NNX
    (``variables`` None: the module holds its state): calls ``model(*args, **kwargs)`` once on a
    copy (so batch statistics and RNG counters of ``model`` stay as they are), in the mode the
    module is in (``.train()``/``.eval()``), recording the selected submodules' outputs. Each
    output's square is averaged over all its entries (batch, time and features); a module
    called several times gives the average over its calls.

    Args:
      model, variables, args, kwargs: as for ``model.apply`` (e.g. ``train=True,
        mutable=["batch_stats"]`` for batch statistics), or an NNX module, None and the
        module's call arguments.
      modules: module class(es) to record, or a predicate ``module -> bool``; None: every
        submodule. The top-level model itself is never recorded. For NNX a class also selects
        the ``nnx.bridge.ToNNX`` wrappers of linen modules of that class (so
        ``modules=rz.RecurrentLayer`` finds bridged zoo layers).
      output: maps a call's return value to the array measured (default: the last element of a
        tuple, the ``y`` of ``(state, y)``, else the value itself).
      method_name: the method whose outputs are recorded.

    Returns:
      ``{"blocks_0/layer": E[y²], ...}`` in call order, scalars. NNX paths are attribute paths
      (``"layers/1"`` for the second module of an ``nnx.Sequential``).

    NNX modules called inside NNX transforms (``nnx.scan``, ``nnx.vmap``, ...) run as copies
    and are not recorded.
    """
    nnx = sys.modules.get("flax.nnx")  # NNX objects exist only where flax.nnx was imported
    is_nnx = nnx is not None and isinstance(model, nnx.Module)
    if isinstance(modules, type | tuple):
        classes = modules

        def modules(mdl: Any) -> bool:
            if is_nnx and isinstance(mdl, nnx.bridge.ToNNX):
                return isinstance(mdl, classes) or isinstance(mdl.to_nnx__module, classes)
            return isinstance(mdl, classes)

    elif modules is None:
        modules = lambda mdl: True
    if not callable(modules):
        raise TypeError(
            f"modules must be a class, a tuple of classes or a predicate, got {modules}"
        )
    if is_nnx:
        if variables is not None:
            raise TypeError(
                "an NNX model holds its own variables: call activity(model, None, *args, ...)"
            )
        return _nnx_activity(model, modules, output, method_name, args, kwargs)

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


def _nnx_activity(
    model: nnx.Module,
    select: Callable[[Any], bool],
    output: Callable[[Any], Array],
    method_name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Array]:
    """:func:`activity` of an NNX module: the method of each selected submodule's class is
    wrapped for the duration of one call (Python looks special methods such as ``__call__`` up
    on the class, so wrapping the instance would not do), recording the selected instances."""
    from flax import nnx

    work = nnx.clone(model)
    chosen = {
        id(m): "/".join(map(str, path)) for path, m in nnx.iter_modules(work) if path and select(m)
    }
    classes = {type(m) for _, m in nnx.iter_modules(work) if id(m) in chosen}
    originals = {cls: getattr(cls, method_name) for cls in classes}
    own = {cls: method_name in vars(cls) for cls in classes}
    calls: dict[str, list[Array]] = {}
    running: set[int] = set()  # a subclass calling super()'s method is one call, not two

    def wrap(original: Callable) -> Callable:
        def recorded(self, *a: Any, **kw: Any) -> Any:
            if id(self) in running or id(self) not in chosen:
                return original(self, *a, **kw)
            running.add(id(self))
            try:
                out = original(self, *a, **kw)
            finally:
                running.discard(id(self))
            calls.setdefault(chosen[id(self)], []).append(mean_square(output(out)))
            return out

        return recorded

    for cls, original in originals.items():
        setattr(cls, method_name, wrap(original))
    try:
        work(*args, **kwargs)
    finally:
        for cls, original in originals.items():
            if own[cls]:
                setattr(cls, method_name, original)
            else:
                delattr(cls, method_name)
    return {name: jnp.mean(jnp.stack(values)) for name, values in calls.items()}


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
      params: the parameters (any pytree: a linen "params" collection, an NNX
        ``nnx.State`` of ``nnx.Param``s, ...).
      grouping: ``path -> group name``, with paths as ``"blocks_0/layer/nu_log"`` (see
        :func:`name_groups`), or a pytree of group names shaped like ``params``.

    Returns:
      ``{group: E[g²]}``, scalars.
    """
    return group_mean_square(jax.grad(loss_fn)(params), grouping)
