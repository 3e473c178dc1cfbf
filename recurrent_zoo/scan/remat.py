"""Bounded-memory backward: any scan run chunk by chunk, each chunk recomputed in the backward pass.

Reverse-mode autodiff of a scan over T steps keeps what each step's derivative reads (its
states, and for some kernels per-step coefficients) for all T steps. :func:`remat_chunks` runs
the same recurrence as ``⌈T/k⌉`` calls of the kernel on chunks of ``k`` steps, threading the
state from one chunk to the next, inside a :func:`jax.lax.scan` over chunks whose body is
wrapped in :func:`jax.checkpoint`. The backward pass then keeps only each chunk's initial state
(``T/k`` states) and, walking the chunks backwards, recomputes one chunk's forward pass at a
time: what it holds at once is one chunk's residuals, ``k`` steps' worth. Memory of the
residuals falls from O(T) to O(T/k + k); the price is one more forward pass.

Any kernel can be chunked this way, since a recurrence over a sequence is the same recurrence
over its pieces in order; the results are the unchunked call's (up to rounding where a kernel's
order of operations depends on T, as the associative scan's does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks

Array = jax.Array


def _time_slice(xs: Any, start: int, stop: int, time_axis: int) -> Any:
    return jax.tree.map(lambda a: jax.lax.slice_in_dim(a, start, stop, axis=time_axis), xs)


def _join_chunks(a: Array, time_axis: int) -> Array:
    """Stacked chunks [m, ..., k, ...] (chunks leading, k steps at time_axis) → [..., m·k, ...]."""
    a = jnp.moveaxis(a, 0, time_axis)
    return a.reshape(*a.shape[:time_axis], -1, *a.shape[time_axis + 2 :])


def remat_chunks(
    run: Callable[[Any, Any], tuple[Any, Any]],
    h0: Any,
    xs: Any,
    chunk: int | None,
    *,
    time_axis: int = 0,
) -> tuple[Any, Any]:
    """``run(h0, xs)``, computed chunk by chunk so that its backward pass keeps a state every
    ``chunk`` steps and recomputes the steps in between.

    With T steps, ``m = T // chunk`` chunks run in a :func:`jax.lax.scan` whose body is
    ``jax.checkpoint(run)`` on ``chunk`` steps, and the ``T mod chunk`` steps left over run in
    one more checkpointed call. ``chunk=None``, or ``chunk ≥ T``, is ``run(h0, xs)`` itself.

    Args:
      run: ``(h0, xs) -> (h_T, ys)``: a scan from state ``h0`` over ``xs``, a pytree whose leaves
        (None allowed) have time at ``time_axis``; ``ys`` leaves have time at ``time_axis`` too.
        Must be causal and stateless beyond ``h``: running it on consecutive pieces of ``xs``,
        each from the previous piece's final state, gives the whole call's results.
      h0: the initial state pytree.
      xs: per-step inputs.
      chunk: k, steps per chunk (a positive int), or None.
      time_axis: where time is in the leaves of ``xs`` and ``ys`` (0: time-major).

    Returns:
      ``(h_T, ys)`` as ``run(h0, xs)``.
    """
    checks.optional_positive_int(chunk, "chunk")
    leaves = [a for a in jax.tree.leaves(xs) if a is not None]
    if chunk is None or not leaves:
        return run(h0, xs)
    T = leaves[0].shape[time_axis]
    m, rest = divmod(T, chunk)
    if m == 0 or (m == 1 and rest == 0):
        return run(h0, xs)
    # prevent_cse=False: inside a scan, checkpoint needs no CSE barrier (JAX's own advice), and
    # one would keep XLA from fusing across the chunk's ops.
    step = jax.checkpoint(run, prevent_cse=False)

    # Each chunk reads its steps by a dynamic slice of xs (inside the checkpoint, so that the
    # residuals are the state and the index), not from a stacked [m, ..., k, ...] copy of them:
    # no copy of the inputs is made, and their cotangent builds up in one buffer.
    def body(h: Any, i: Array) -> tuple[Any, Any]:
        cut = lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk, axis=time_axis)
        return run(h, jax.tree.map(cut, xs))

    h, ys = jax.lax.scan(jax.checkpoint(body, prevent_cse=False), h0, jnp.arange(m))
    ys = jax.tree.map(lambda a: _join_chunks(a, time_axis), ys)
    if rest == 0:
        return h, ys
    h, ys_rest = step(h, _time_slice(xs, m * chunk, T, time_axis))
    return h, jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=time_axis), ys, ys_rest)
