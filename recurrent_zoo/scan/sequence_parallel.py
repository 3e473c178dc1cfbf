"""Sequence parallelism for linear recurrences: time sharded over a mesh axis, exactly.

Inside :func:`jax.shard_map` over a mesh axis of P devices, device i holds the contiguous chunk
i of time (in axis order). For a linear recurrence ``h_t = A_t h_{t−1} + u_t`` (``A_t`` the
coefficient ``a``, zero where a reset is asked, the identity at a padded step) the state at the
end of chunk i is affine in the state entering it:

    h_end,i = Φ_i h_in,i + e_i,    Φ_i = Π_{t ∈ chunk i} A_t,    e_i = the chunk's end state from 0,

so the states entering the chunks follow ``h_in,0 = h0`` and ``h_in,i+1 = Φ_i h_in,i + e_i``: an
exclusive scan of P small items ``(Φ_i, e_i)``. :func:`sequence_parallel` computes each device's
``(Φ_i, e_i)`` locally (one scan of its chunk from a zero state; Φ_i in closed form, a power of
``a`` cut by resets, see :func:`chunk_transfer`), gathers the P items on every device
(:func:`carry_in`), and runs the chunk again from its carry-in: every output is then computed as
in the unsharded scan, from a state equal to the unsharded one up to rounding. Backwards in time
(``reverse``) the chunks are visited from the last device to the first. Reverse-mode autodiff
goes through it (the gather's transpose is a reduce-scatter). Per device, the forward pass costs
about two local scans; the backward pass about two local backward scans plus the first pass run
again, piece by piece (it is checkpointed, so that its states are not kept meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo.scan.linear import Structure, _apply, _compose

Array = jax.Array

#: The first pass's checkpointed pieces by default (see :func:`sequence_parallel`).
FIRST_PASS_PIECES = 16


def bound_axis_size(axis: str) -> int | None:
    """The size of mesh axis ``axis`` inside :func:`jax.shard_map` (or another map binding it);
    None where no map binds it (outside shard_map, e.g. at ``init``)."""
    try:
        return jax.lax.axis_size(axis)
    except NameError:
        return None


def time_chunk(axis: str | None, T: int) -> tuple[int, int | Array]:
    """``(T_all, offset)`` for a chunk of T steps of a sequence sharded over mesh axis ``axis``:
    the global length (P·T inside a map binding an axis of P devices) and the global time of the
    chunk's first step; ``(T, 0)`` where ``axis`` is None or no map binds it."""
    shards = None if axis is None else bound_axis_size(axis)
    if shards is None or shards == 1:
        return T, 0
    return shards * T, jax.lax.axis_index(axis) * T


def _varying(h: Array, axis: str) -> Array:
    """``h`` typed as varying over ``axis``: a scan's initial carry must match its body's output,
    which reads this device's chunk (shard_map's check of replication otherwise rejects it)."""
    aval = jax.typeof(h)
    manual = getattr(aval, "manual_axis_type", None)
    varying = manual.varying if manual is not None else getattr(aval, "vma", frozenset())
    if axis in varying:
        return h
    return jax.lax.pcast(h, (axis,), to="varying")


def _identity_like(a: Array, structure: Structure) -> Array:
    if structure == "diagonal":
        return jnp.ones_like(a)
    return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


def _flags(m: Array, like: Array) -> Array:
    """Per-row flags [B] with trailing unit axes, to broadcast against ``like`` [B, ...]."""
    return m.reshape(m.shape + (1,) * (like.ndim - m.ndim))


def chunk_transfer(
    a: Array,
    batch: int,
    T: int,
    resets: Array | None,
    mask: Array | None,
    structure: Structure = "diagonal",
    *,
    time_axis: int = 0,
) -> Array:
    """Φ = Π_t A_t over a chunk of T steps, per sequence: ``a^n`` with n its valid steps, or 0
    where a valid step asks for a reset.

    ``a^n`` is formed by squaring (log₂ T products of ``a``), for each row's own n.

    Args:
      a: diagonal ``[N]`` or blocks ``[H, d, d]``.
      batch: B, the number of sequences.
      T: the chunk's length.
      resets, mask: [T, B] bool flags (``time_axis=1``: [B, T]), or None.
      structure: "diagonal" or "block".

    Returns:
      [B, N] or [B, H, d, d].
    """
    n = jnp.full((batch,), T, jnp.int32)
    if mask is not None:
        n = jnp.sum(mask, axis=time_axis, dtype=jnp.int32)
    power = jnp.broadcast_to(_identity_like(a, structure), (batch, *a.shape))
    square = a
    for bit in range(max(T.bit_length(), 1)):
        take = (n >> bit) & 1 == 1
        power = jnp.where(_flags(take, power), _compose(square, power, structure), power)
        square = _compose(square, square, structure)
    if resets is not None:
        cut = resets if mask is None else resets & mask
        cut = jnp.any(cut, axis=time_axis)
        power = jnp.where(_flags(cut, power), jnp.zeros_like(power), power)
    return power


def carry_in(
    transfer: Array,
    end: Array,
    h0: Array,
    axis: str,
    *,
    structure: Structure = "diagonal",
    reverse: bool = False,
) -> tuple[Array, Array]:
    """Each device's carry-in and the final state, from every chunk's ``(Φ_i, e_i)``.

    The P items are gathered on every device and scanned there in axis order (``reverse``: from
    the last device to the first): ``c ← Φ_i c + e_i`` from ``c = h0``.

    Args:
      transfer: this device's Φ_i, [B, N] or [B, H, d, d].
      end: this device's e_i, the chunk's end state from a zero state, [B, N] or [B, H, d].
      h0: the initial state entering the first chunk (replicated), like ``end``.
      axis: the mesh axis time is sharded over.

    Returns:
      ``(carry, final)``: the state entering this device's chunk, and the state after the last
      chunk (the same on every device).
    """
    size = jax.lax.axis_size(axis)
    transfers = jax.lax.all_gather(transfer, axis, to="invarying")
    ends = jax.lax.all_gather(end, axis, to="invarying")
    carries: list[Array] = [h0] * size
    c = h0
    for i in reversed(range(size)) if reverse else range(size):
        carries[i] = c
        c = _apply(transfers[i], c, structure) + ends[i]
    return jnp.stack(carries)[jax.lax.axis_index(axis)], c


def _from_next_device(first: Array, axis: str) -> Array:
    """The value ``first`` of the next device along ``axis`` (zeros on the last device)."""
    size = jax.lax.axis_size(axis)
    return jax.lax.ppermute(first, axis, perm=[(i + 1, i) for i in range(size - 1)])


def shift_resets_back(
    resets: Array, mask: Array | None, axis: str | None, *, time_axis: int = 0
) -> Array:
    """``r'_t = r_{t+1} ∧ valid_{t+1}``: the resets of a reversed run, in forward time.

    A reset at t starts a piece at t; backwards, that piece is entered at its last step t − 1,
    so the state is zeroed there before the step's input is read. A reset at the first step
    past a sequence's end means nothing. The flag of the step after a chunk's last one comes
    from the next device along ``axis`` (False after the last chunk).
    """
    r = resets if mask is None else resets & mask
    first = jax.lax.index_in_dim(r, 0, axis=time_axis, keepdims=True)
    if axis is None:
        nxt = jnp.zeros_like(first)
    else:
        nxt = _from_next_device(first.astype(jnp.int8), axis) > 0
    rest = jax.lax.slice_in_dim(r, 1, r.shape[time_axis], axis=time_axis)
    return jnp.concatenate([rest, nxt], axis=time_axis)


def first_pass_end(
    run: Callable[..., tuple[Any, Any]],
    h0: Any,
    xs: tuple[Array | None, ...],
    pieces: int,
    *,
    time_axis: int = 0,
) -> Any:
    """``run(h0, *xs)[0]``, the end state alone, computed as ``pieces`` checkpointed pieces.

    A :func:`jax.lax.scan` over the pieces runs ``jax.checkpoint(run)`` on ⌈T/pieces⌉ steps at a
    time (the steps left over: one more checkpointed call), so the backward pass recomputes one
    piece at a time from its entering state. Each piece reads its steps by a dynamic slice of
    ``xs`` rather than from a stacked copy of them (as :func:`~recurrent_zoo.scan.remat_chunks`
    makes), so no copy of the inputs is kept: their cotangent builds up in one buffer.

    Args:
      run: ``(h, *xs) -> (h_T, ys)``, causal in time, as :func:`sequence_parallel` takes.
      h0: the initial state.
      xs: arrays (or None) with time at ``time_axis``, the first one not None.
      pieces: how many pieces; 1 calls ``run`` once.
    """
    T = xs[0].shape[time_axis]
    if pieces == 1:
        return run(h0, *xs)[0]
    k = -(-T // pieces)
    m, rest = divmod(T, k)

    def piece(h: Any, start: Any, size: int) -> Any:
        cut = lambda z: jax.lax.dynamic_slice_in_dim(z, start, size, axis=time_axis)
        return run(h, *(None if z is None else cut(z) for z in xs))[0]

    # prevent_cse=False: inside a scan no CSE barrier is needed (as in remat_chunks).
    step = jax.checkpoint(lambda h, i: (piece(h, i * k, k), None), prevent_cse=False)
    h, _ = jax.lax.scan(step, h0, jnp.arange(m))
    if rest:
        h = jax.checkpoint(lambda h: piece(h, m * k, rest))(h)
    return h


def sequence_parallel(
    run: Callable[[Any, Array, Array | None, Array | None], tuple[Any, Any]],
    a: Array,
    h0: Array,
    x: Array,
    resets: Array | None,
    mask: Array | None,
    *,
    axis: str,
    structure: Structure = "diagonal",
    reverse: bool = False,
    time_axis: int = 0,
    first_pass_pieces: int = FIRST_PASS_PIECES,
) -> tuple[Array, Any]:
    """A linear recurrence over time sharded along mesh axis ``axis``; call inside shard_map.

    ``run(h0, x, resets, mask) -> (h_T, y)`` runs the recurrence ``h_t = a h_{t−1} + u_t`` (with
    ``u`` and the outputs ``y`` any per-step functions of ``x`` and ``h``) over this device's
    chunk in forward time, with the kernels' resets and padding (see
    :mod:`recurrent_zoo.scan.time`). It is run twice: from a zero state, for the chunk's end
    state, then from the carry-in that :func:`carry_in` gives.

    Of the first pass only the end state is used, so it runs as ``first_pass_pieces``
    checkpointed pieces (:func:`first_pass_end`): its backward pass then recomputes one piece at
    a time, from the end state's cotangent, rather than keeping this chunk's states (and the
    zero-initialised buffers of its scans, which XLA allocates at the start) from the forward
    pass until the second pass's backward is done.

    Args:
      run: the local scan, as above; states [B, N] (for blocks: [B, H·d], heads contiguous).
      a: the recurrence's coefficient, diagonal ``[N]`` or blocks ``[H, d, d]``.
      h0: [B, N] the state entering the first chunk (the last with ``reverse``), replicated.
      x: this device's chunk of the inputs, time at ``time_axis``.
      resets, mask: this device's chunk of the flags ([T, B]; ``time_axis=1``: [B, T]), or None;
        ``resets`` as given to the unreversed call (their shift for ``reverse`` is done here).
      axis: the mesh axis time is sharded over, in axis order.
      structure: "diagonal" or "block".
      reverse: time runs backwards: each chunk is run backwards and the chunks are chained from
        the last device to the first; ``y`` stays aligned with ``x``. Under padding each
        sequence's valid part runs backwards, its padding (held state) first.
      time_axis: where time is in ``x``, the flags and ``y`` (0 or 1).
      first_pass_pieces: the first pass's checkpointed pieces (each ⌈T/pieces⌉ steps); 1 runs
        it as one call, for a ``run`` that bounds its own backward memory (``remat_chunk``).

    Returns:
      ``(h_T, y)``: the state after the last chunk (replicated) and this chunk's outputs.
    """
    batch, T = x.shape[1 - time_axis], x.shape[time_axis]
    if reverse:
        if resets is not None:
            resets = shift_resets_back(resets, mask, axis, time_axis=time_axis)
        x, resets, mask = (None if z is None else jnp.flip(z, time_axis) for z in (x, resets, mask))

    def heads(h: Array) -> Array:  # [B, N] as the structure's state: [B, N] or [B, H, d]
        return h if structure == "diagonal" else h.reshape(*h.shape[:-1], a.shape[0], -1)

    checks.positive_int(first_pass_pieces, "first_pass_pieces")
    zero = _varying(jnp.zeros_like(h0), axis)
    end = first_pass_end(run, zero, (x, resets, mask), first_pass_pieces, time_axis=time_axis)
    transfer = chunk_transfer(a, batch, T, resets, mask, structure, time_axis=time_axis)
    carry, final = carry_in(
        transfer, heads(end), heads(h0), axis, structure=structure, reverse=reverse
    )
    _, y = run(_varying(carry.reshape(h0.shape), axis), x, resets, mask)
    if reverse:
        y = jax.tree.map(lambda z: jnp.flip(z, time_axis), y)
    return final.reshape(h0.shape), y
