"""The generic cell scan: any step ``h_t, y_t = cell(h_{t-1}, u_t)``, sequentially."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from recurrent_zoo.scan.time import where_tree

Array = jax.Array


def scan_cell(
    cell: Callable[[Any, Any], tuple[Any, Any]],
    h0: Any,
    u: Any,
    *,
    resets: Array | None = None,
    mask: Array | None = None,
    unroll: int = 1,
) -> tuple[Any, Any]:
    """Runs ``h_t, y_t = cell(h_{t-1}, u_t)`` over time, sequentially.

    Args:
      cell: one step; ``h`` leaves are [B, ...], ``u_t`` leaves [B, ...].
      h0: initial state pytree, leaves [B, ...].
      u: per-step inputs pytree, leaves [T, B, ...] (time-major).
      resets: [T, B] bool; where True the state is zeroed before ``u_t`` is read.
      mask: [T, B] bool; where False the step is skipped (state held, a reset there ignored).
      unroll: steps unrolled per loop iteration.

    Returns:
      ``(h_T, ys)``: the state after the last valid step, and ``ys`` with leaves [T, B, ...].
    """

    def body(h_prev, inp):
        u_t, r_t, m_t = inp
        h = h_prev
        if r_t is not None:
            h = where_tree(r_t, jax.tree.map(jnp.zeros_like, h), h)
        h_new, y = cell(h, u_t)
        if m_t is not None:
            # A padded step holds the state, even where a reset was asked there.
            h_new = where_tree(m_t, h_new, h_prev)
        return h_new, y

    return jax.lax.scan(body, h0, (u, resets, mask), unroll=unroll)
