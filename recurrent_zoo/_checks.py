"""Argument checks shared by every layer.

Each check runs at trace time and raises an error that names the argument, what was seen and
what was expected, so a bad call never turns into a silently wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _dtype_name(x: Any) -> str:
    return str(jnp.result_type(x))


def sequence_input(x: Any, name: str = "x") -> tuple[tuple[int, ...], int, int]:
    """Checks a float array of shape [*batch, T, D]; returns (batch_shape, T, D)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"{name} must be a float array of shape [*batch, T, features], got {type(x)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {_dtype_name(x)}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape [*batch, T, features] (rank >= 2), got shape {tuple(x.shape)}"
        )
    if x.shape[-2] < 1:
        raise ValueError(
            f"{name} must have at least one time step (T >= 1), got shape {tuple(x.shape)}"
        )
    return tuple(x.shape[:-2]), int(x.shape[-2]), int(x.shape[-1])


def step_input(x: Any, name: str = "x") -> tuple[tuple[int, ...], int]:
    """Checks a float array of shape [*batch, D]; returns (batch_shape, D)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be a float array of shape [*batch, features], got {type(x)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {_dtype_name(x)}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape [*batch, features] (rank >= 1), got a scalar")
    return tuple(x.shape[:-1]), int(x.shape[-1])


def feature_size(seen: int, expected: int, name: str = "x", built: str | None = None) -> None:
    """``seen == expected`` features, else a ValueError naming ``name`` and why ``expected``:
    ``built`` (e.g. "built with in_features=3"), or by default the inputs the layer was
    initialised with."""
    if seen != expected:
        why = built or f"initialised with inputs of {expected} features"
        raise ValueError(
            f"{name} has {seen} features (last axis), expected {expected}: the layer was {why}"
        )


def resets(r: Any, batch_shape: Sequence[int], T: int) -> jax.Array | None:
    """Checks resets of shape [*batch, T] (bool, or 0/1 integers); returns a bool array."""
    if r is None:
        return None
    r = jnp.asarray(r)
    expected = (*batch_shape, T)
    if tuple(r.shape) != expected:
        raise ValueError(
            f"resets must have shape [*batch, T] = {expected}, got shape {tuple(r.shape)}"
        )
    if not (r.dtype == jnp.bool_ or jnp.issubdtype(r.dtype, jnp.integer)):
        raise TypeError(f"resets must be a bool array, got dtype {_dtype_name(r)}")
    return r.astype(jnp.bool_)


def lengths(n: Any, batch_shape: Sequence[int], T: int) -> jax.Array | None:
    """Checks lengths of shape [*batch] with integer values in [0, T].

    Concrete values out of range raise a ValueError. Under `jit` the values are unknown at trace
    time; there, a sequence whose length is out of range gets NaN outputs and state instead of a
    silently wrong answer (see `poison_out_of_range`).
    """
    if n is None:
        return None
    if not hasattr(n, "shape"):
        n = np.asarray(n)
    expected = tuple(batch_shape)
    if tuple(n.shape) != expected:
        raise ValueError(
            f"lengths must have shape [*batch] = {expected}, got shape {tuple(n.shape)}"
        )
    if not jnp.issubdtype(n.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array, got dtype {_dtype_name(n)}")
    if not isinstance(n, jax.core.Tracer):
        values = np.asarray(n)
        if values.size and (values.min() < 0 or values.max() > T):
            raise ValueError(
                f"lengths must lie in [0, T] = [0, {T}], got values in "
                f"[{int(values.min())}, {int(values.max())}]"
            )
    return jnp.asarray(n, jnp.int32)


def poison_out_of_range(tree: Any, n: jax.Array | None, T: int) -> Any:
    """Turns the leaves of sequences whose traced length is outside [0, T] into NaN."""
    if n is None or not isinstance(n, jax.core.Tracer):
        return tree
    bad = (n < 0) | (n > T)

    def poison(leaf):
        b = bad.reshape(bad.shape + (1,) * (leaf.ndim - bad.ndim))
        return jnp.where(b, jnp.nan, leaf)

    return jax.tree.map(poison, tree)


def _describe(tree: Any) -> str:
    """A pytree of arrays as text, e.g. ``(float32[2, 4], float32[2, 4])``."""

    def leaf(a: Any) -> str:
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return f"{jnp.dtype(a.dtype).name}{list(a.shape)}"
        return type(a).__name__

    return str(jax.tree.map(leaf, tree, is_leaf=lambda a: a is None)).replace("'", "")


def state(s: Any, expected: Any, name: str = "initial_state") -> Any:
    """Checks that a state pytree matches `expected` (structure, shapes, dtypes) and casts it."""
    s_leaves, s_def = jax.tree.flatten(s)
    e_leaves, e_def = jax.tree.flatten(expected)
    if s_def != e_def:
        raise ValueError(
            f"{name} must have the layer's state structure {_describe(expected)}, "
            f"got {_describe(s)}"
        )
    out = []
    for got, want in zip(s_leaves, e_leaves):
        got_shape = tuple(jnp.shape(got))
        if got_shape != tuple(want.shape):
            raise ValueError(
                f"{name} must have shape {tuple(want.shape)} ([*batch, hidden_size]), "
                f"got shape {got_shape}"
            )
        got_dtype = jnp.result_type(got)
        if jnp.issubdtype(want.dtype, jnp.complexfloating):
            ok = jnp.issubdtype(got_dtype, jnp.inexact)
        else:
            ok = jnp.issubdtype(got_dtype, jnp.floating)
        if not ok:
            raise TypeError(f"{name} must have dtype {want.dtype}, got dtype {got_dtype}")
        out.append(jnp.asarray(got).astype(want.dtype))
    return jax.tree.unflatten(e_def, out)


def choice(value: Any, allowed: Sequence[Any], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def positive_int(value: Any, name: str) -> None:
    """``value`` is a positive int: Python's or NumPy's, and not a bool (True is not 1 unit)."""
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not (is_int and value >= 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def optional_positive_int(value: Any, name: str) -> None:
    """``value`` is None or a positive int, as :func:`positive_int` takes one."""
    if value is not None:
        try:
            positive_int(value, name)
        except ValueError:
            raise ValueError(f"{name} must be a positive int or None, got {value!r}") from None
