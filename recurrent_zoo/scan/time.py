"""Time bookkeeping shared by every kernel: padding masks, resets, and reversal as a permutation.

Arrays are time-major, as everywhere in :mod:`recurrent_zoo.scan`: time is axis 0, a flag array
is ``[T, B]`` and the values it flags are ``[T, B, ...]``.

* Right padding: ``mask[t, b]`` False marks step t of sequence b as padding; the state is held
  there and the step's input ignored (:func:`valid_mask` makes the mask from lengths).
* Resets: ``resets[t, b]`` True zeroes the state before ``u_t`` is read. A padded step holds the
  state even where a reset falls in the padding.
* ``reverse``, per sequence under padding: :func:`time_permutation` reverses each sequence's valid
  part and leaves its padding in place, and :func:`reverse_time` applies it.

:func:`valid_mask` and :func:`reverse_time` also serve the layers' boundary, where arrays are
batch-major ``[B, T, ...]``: their ``time_axis`` argument (default 0) says where time is, so
that a batch-major caller needs no transpose of a large array just to reach this layout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def valid_mask(lengths: Array | None, T: int, *, time_axis: int = 0) -> Array | None:
    """bool [T, *batch] from lengths [*batch]: True where t < lengths; None without padding.

    ``time_axis`` places the time axis elsewhere (-1: [*batch, T]).
    """
    if lengths is None:
        return None
    return jnp.moveaxis(jnp.arange(T) < lengths[..., None], -1, time_axis)


def time_permutation(lengths: Array | None, T: int) -> Array | None:
    """Index [T, B] that reverses each sequence's valid part and leaves padding in place.

    It is its own inverse, so the same gather maps inputs into reversed time and outputs back.
    Returns None without padding (a plain flip then does).
    """
    if lengths is None:
        return None
    t = jnp.arange(T)[:, None]
    n = lengths[None, :]
    return jnp.where(t < n, n - 1 - t, t)


def reverse_time(x: Array | None, perm: Array | None, *, time_axis: int = 0) -> Array | None:
    """Applies the time reversal of :func:`time_permutation` to ``x: [T, B, ...]``.

    With ``time_axis=1``, to ``x: [B, T, ...]`` (``perm`` stays [T, B]).
    """
    if time_axis not in (0, 1):
        raise ValueError(f"time_axis must be 0 ([T, B, ...]) or 1 ([B, T, ...]), got {time_axis!r}")
    if x is None:
        return None
    if perm is None:
        return jnp.flip(x, axis=time_axis)
    perm = perm if time_axis == 0 else perm.T
    idx = perm.reshape(perm.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=time_axis)


def broadcast_flags(m: Array, like: Array) -> Array:
    """A ``[T, B]`` (or ``[B]``) flag array with trailing unit axes, to broadcast against ``like``."""
    return m.reshape(m.shape + (1,) * (like.ndim - m.ndim))


def where_tree(m: Array, x: Any, y: Any) -> Any:
    """``x`` where the flags ``m`` are True, else ``y``, leaf by leaf over two equal pytrees."""
    return jax.tree.map(lambda a, b: jnp.where(broadcast_flags(m, a), a, b), x, y)


def float_flags(
    resets: Array | None, mask: Array | None, dtype: Any
) -> tuple[Array | None, Array | None]:
    """``(keep, valid)`` [T, B, 1] in ``dtype``: 0 where a reset is asked, 0 at padded steps.

    Kernels with a custom JVP take their flags this way, so that every input is a float.
    """
    keep = None if resets is None else (~resets).astype(dtype)[..., None]
    valid = None if mask is None else mask.astype(dtype)[..., None]
    return keep, valid


def reset(keep_t: Array | None, h: Array) -> Array:
    """The state a step reads: ``h``, or zeros where ``keep_t`` (from :func:`float_flags`) is 0."""
    return h if keep_t is None else jnp.where(keep_t > 0, h, jnp.zeros_like(h))


def hold(valid_t: Array | None, h_new: Array, h_prev: Array) -> Array:
    """The state a step leaves: ``h_new``, or ``h_prev`` at a padded step (``valid_t`` 0)."""
    return h_new if valid_t is None else jnp.where(valid_t > 0, h_new, h_prev)
