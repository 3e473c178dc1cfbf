"""Time-invariant linear recurrences ``h_t = a h_{t−1} + u_t``, sequentially or associatively."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo.scan.cell import scan_cell
from recurrent_zoo.scan.strategy import METHODS, resolve_method
from recurrent_zoo.scan.time import broadcast_flags

Array = jax.Array
Structure = Literal["diagonal", "block"]


def _apply(a: Array, h: Array, structure: Structure) -> Array:
    if structure == "diagonal":
        return a * h
    return jnp.einsum("...hij,...hj->...hi", a, h)


def linear_step(a: Array, h: Array, u: Array, structure: Structure = "diagonal") -> Array:
    """One step of the linear recurrence: ``a h + u`` (diagonal ``a`` or blocks ``[H, d, d]``)."""
    return _apply(a, h, structure) + u


def _compose(a2: Array, a1: Array, structure: Structure) -> Array:
    """The coefficient of two steps, a1 first then a2."""
    if structure == "diagonal":
        return a2 * a1
    return jnp.einsum("...hij,...hjk->...hik", a2, a1)


def linear_scan(
    a: Array,
    u: Array,
    h0: Array,
    *,
    resets: Array | None = None,
    mask: Array | None = None,
    method: str = "auto",
    structure: Structure = "diagonal",
    unroll: int = 1,
) -> tuple[Array, Array]:
    """Runs the time-invariant linear recurrence ``h_t = a h_{t-1} + u_t``.

    Works for real or complex ``a``. A complex diagonal runs here in complex arithmetic; its
    sequential scan is faster in :func:`~recurrent_zoo.scan.complex_diagonal_scan`, which
    :func:`~recurrent_zoo.scan.select_kernel` picks for the layers.

    Args:
      a: diagonal ``[N]`` (``structure="diagonal"``) or blocks ``[H, d, d]`` (``"block"``).
      u: [T, B, N] or [T, B, H, d] inputs, already projected (time-major).
      h0: [B, N] or [B, H, d] initial state.
      resets: [T, B] bool; where True the state is zeroed before ``u_t`` is read.
      mask: [T, B] bool; where False the step is skipped (state held, a reset there ignored).
      method: one of :data:`~recurrent_zoo.scan.METHODS` ("auto": see
        :func:`~recurrent_zoo.scan.select_kernel`).
      unroll: steps unrolled per loop iteration of the sequential scan.

    Returns:
      ``(h_T, hs)``: the state after the last valid step, and all states, hs [T, B, ...].
    """
    checks.choice(method, METHODS, "method")
    if resolve_method(method, structure) == "sequential":

        def cell(h, u_t):
            h = linear_step(a, h, u_t, structure)
            return h, h

        return scan_cell(cell, h0, u, resets=resets, mask=mask, unroll=unroll)

    T, B = u.shape[:2]
    # Time-varying coefficients carry resets (a_t = 0) and padding (a_t = identity, u_t = 0).
    a_t = jnp.broadcast_to(a, (T, B, *a.shape))
    if resets is not None:
        a_t = jnp.where(broadcast_flags(resets, a_t), jnp.zeros_like(a_t), a_t)
    if mask is not None:
        eye = (
            jnp.ones_like(a)
            if structure == "diagonal"
            else jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
        )
        a_t = jnp.where(broadcast_flags(mask, a_t), a_t, eye)
        u = jnp.where(broadcast_flags(mask, u), u, jnp.zeros_like(u))
    u = u.at[0].add(_apply(a_t[0], h0, structure))

    def combine(first, second):
        a1, b1 = first
        a2, b2 = second
        return _compose(a2, a1, structure), _apply(a2, b1, structure) + b2

    _, hs = jax.lax.associative_scan(combine, (a_t, u), axis=0)
    return hs[-1], hs
