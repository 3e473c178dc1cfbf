"""Parameter groups: naming every leaf of a pytree, for the per-group diagnostics.

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
    """A pytree key path as ``"a/b/c"`` (the convention of :func:`diagnostics.adam.group_summary`)."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


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
        names = [str(n) for n in jax.tree.leaves(grouping)]
        if jax.tree.structure(grouping) != jax.tree.structure(tree):
            raise ValueError(
                f"{name} must be None, a function of the leaf path, or a pytree of group names "
                f"with the structure of the tree; got {len(names)} names for {len(flat)} leaves"
            )
    return [(g, leaf) for g, (_, leaf) in zip(names, flat, strict=True)]
