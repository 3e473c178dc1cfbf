"""Parameter groups: naming every leaf of a pytree, for the per-group diagnostics.

Trees may be linen collections (nested dicts) or Flax NNX states (``nnx.State``, whose leaves are
named as in their pure dict).

A grouping is ``None`` (each leaf's own name, the last key of its path), a function of the leaf's
path (``"blocks_0/layer/nu_log"``) returning a group name, such as :func:`name_groups` builds, or
a pytree of group names shaped like the tree (e.g. :func:`recurrent_zoo.optim.param_labels`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

PyTree = Any
Grouping = Callable[[str], str] | PyTree | None

__all__ = ["group_leaves", "name_groups", "path_name"]


def path_name(path: Sequence[Any]) -> str:
    """A pytree key path as ``"a/b/c"`` (the convention of :func:`diagnostics.adam.group_summary`).

    The path of a Flax NNX state leaf ends in the ``value`` attribute of its ``nnx.Variable``;
    that last step is dropped, so ``nnx.state(model, nnx.Param)`` names its leaves as the pure
    dict (and a linen model with the same modules) does: ``"layer/nu_log"``.
    """
    path = tuple(path)
    if (
        len(path) > 1
        and isinstance(path[-1], jax.tree_util.GetAttrKey)
        and path[-1].name == "value"
    ):
        path = path[:-1]
    return jax.tree_util.keystr(path, simple=True, separator="/")


def name_groups(default: str = "rest", **groups: str | Sequence[str]) -> Callable[[str], str]:
    """A grouping ``path -> group``: a parameter is in group g when one component of its path
    (``"blocks_0/layer/nu_log"`` has three) is among ``groups[g]``; else in ``default``.

    Groups are tried in the order given. Example: ``name_groups(nu="nu_log",
    theta="theta_log")``, or ``name_groups(cell="layer")`` for every parameter of the recurrent
    layers inside :class:`recurrent_zoo.RecurrentBlock`.
    """
    if not groups:
        raise ValueError("name_groups needs at least one group, e.g. name_groups(lam='lambda_re')")
    table = {g: {names} if isinstance(names, str) else set(names) for g, names in groups.items()}

    def group(path: str) -> str:
        parts = set(path.split("/"))
        for g, names in table.items():
            if parts & names:
                return g
        return default

    return group


def group_leaves(tree: PyTree, grouping: Grouping, name: str = "grouping") -> list[tuple[str, Any]]:
    """``(group name, leaf)`` for every leaf of ``tree``, in flattening order.

    ``grouping`` as in the module docstring; ``name`` is the argument's name in errors.
    """
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    paths = [path_name(p) for p, _ in flat]
    if grouping is None:
        names = [p.rsplit("/", 1)[-1] for p in paths]
    elif callable(grouping):
        names = [str(grouping(p)) for p in paths]
    else:
        labelled = jax.tree_util.tree_flatten_with_path(grouping)[0]
        names = [str(n) for _, n in labelled]
        if jax.tree.structure(grouping) != jax.tree.structure(tree):
            # The same leaves under other node types (an nnx.State of Params labelling one of
            # nnx.Optimizer's OptVariables, or its pure dict): match the leaves by path.
            by_path = {path_name(p): n for (p, _), n in zip(labelled, names)}
            if len(by_path) != len(labelled) or sorted(by_path) != sorted(paths):
                raise ValueError(
                    f"{name} must be None, a function of the leaf path, or a pytree of group "
                    f"names with the structure of the tree; got {len(names)} names for "
                    f"{len(flat)} leaves"
                )
            names = [by_path[p] for p in paths]
    return [(g, leaf) for g, (_, leaf) in zip(names, flat, strict=True)]
