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
(``reverse``) the chunks are visited from the last device to the first.

Reverse-mode autodiff goes through a custom VJP: the unsharded gradient restricted to chunk i is
one backward pass of the chunk from its carry-in, given the adjoint entering its end from the
next chunk. Those adjoints are the carries' scan transposed: ``λ_end,i = ∂c_{i+1}``,
``∂c_i = g_i + Φ_iᵀ λ_end,i`` (from the last chunk, ``λ_end = ∂h_T``), with ``g_i`` the
carry-in's cotangent from chunk i's own outputs. Each device runs its adjoint alone for ``g_i``
(no ∂x), gathers the P items ``(Φ_iᵀ, g_i)``, and runs one full backward pass from its
``λ_end,i`` (:func:`backward_in_pieces`): one ∂x buffer per device, written into ∂y's buffer
where they have the same shape. Per device, the forward pass costs about two local scans; the
backward pass two more forward scans and two backward scans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo.scan.linear import Structure, _apply, _compose

Array = jax.Array

#: The backward pass's pieces by default (see :func:`sequence_parallel`).
BACKWARD_PIECES = 16


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


def _sliced(run: Callable[..., tuple[Any, Any]], size: int, time_axis: int) -> Callable:
    """``(h, start, *xs) -> run(h, *xs[start : start + size])``, time at ``time_axis``."""

    def call(h: Any, start: Any, *xs: Array | None) -> tuple[Any, Any]:
        if size == xs[0].shape[time_axis]:
            return run(h, *xs)
        cut = lambda z: jax.lax.dynamic_slice_in_dim(z, start, size, axis=time_axis)
        return run(h, *(None if z is None else cut(z) for z in xs))

    return call


def backward_in_pieces(
    runs: dict[int, Callable[..., tuple[Any, Any]]],
    consts: dict[int, list[Array]],
    h0: Array,
    xs: tuple[Array | None, ...],
    dy: Array,
    end_cotangent: Callable[[Array], Array],
    k: int,
    *,
    time_axis: int = 0,
) -> tuple[Array, dict[int, list[Any]]]:
    """The cotangents of ``x = xs[0]`` and of the ``consts`` for a causal scan over T steps,
    given that of its outputs ``y`` (``dy``), k steps at a time; the end state's cotangent is
    ``end_cotangent(g)``, with g the initial state's cotangent from ``dy`` alone.

    ``runs[size](h, start, *xs, *consts[size]) -> (h_end, y)`` runs the scan from state ``h``
    over steps ``start … start + size − 1`` of ``xs`` (sizes k and, where k does not divide T,
    T mod k). A forward scan keeps the state entering each piece of k steps; a backward scan of
    the adjoint alone (no ∂x) gives g; a second backward scan then takes each piece's whole VJP
    from its entering state. Both read their steps of ``xs`` and ``dy`` by dynamic slices,
    never a copy of them in another layout. Each piece's ∂x is written into one buffer as it comes; where ``dy``
    has the shape and dtype of x that buffer is ``dy`` itself, overwritten piece by piece once
    read (each step's ∂y is read only by its own piece), so no array of the size of x is
    allocated beside ∂y.

    Args:
      runs, consts: the piece runs and the arrays each reads whole (the parameters), by size.
      h0: the state entering the first step.
      xs: the inputs with time at ``time_axis``, x first; the others (flags) get no cotangent.
      dy: the cotangent of y, time at ``time_axis``.
      end_cotangent: g ↦ the end state's cotangent (for a chunk of a sharded sequence, the
        adjoint entering from the next chunk, which depends on this chunk's g).
      k: steps per piece.

    Returns:
      ``(dx, d_consts)``, ``d_consts`` by size as ``consts``.
    """
    x, flags = xs[0], xs[1:]
    T = x.shape[time_axis]
    n, rest = divmod(T, k)
    cut = lambda z, start, size: jax.lax.dynamic_slice_in_dim(z, start, size, axis=time_axis)
    put = lambda buf, dxi, start: jax.lax.dynamic_update_slice_in_dim(
        buf, dxi.astype(buf.dtype), start, time_axis
    )

    def piece(start: Any, size: int) -> Callable[..., tuple[Any, Any]]:
        # x's own steps are cut outside, so that its cotangent is the piece's alone.
        sliced = [None if z is None else cut(z, start, size) for z in flags]
        return lambda h, xi, cs: runs[size](h, 0, xi, *sliced, *cs)

    def piece_vjp(h: Array, start: Any, size: int, lam: Array, dyi: Array) -> tuple[Any, ...]:
        _, pull = jax.vjp(piece(start, size), h, cut(x, start, size), consts[size])
        return pull((lam, dyi))

    def adjoint(h: Array, start: Any, size: int, lam: Array) -> Array:
        xi, cs = cut(x, start, size), consts[size]
        _, pull = jax.vjp(lambda h: piece(start, size)(h, xi, cs), h)
        return pull((lam, cut(dy, start, size)))[0]

    def enter(h: Array, i: Array) -> tuple[Array, Array]:
        return runs[k](h, i * k, *xs, *consts[k])[0], h

    h_rest, entering = jax.lax.scan(enter, h0, jnp.arange(n))
    g = jnp.zeros_like(h0)
    if rest:
        g = adjoint(h_rest, n * k, rest, g)
    g, _ = jax.lax.scan(
        lambda lam, item: (adjoint(item[1], item[0] * k, k, lam), None),
        g,
        (jnp.arange(n), entering),
        reverse=True,
    )
    in_place = dy.shape == x.shape and dy.dtype == x.dtype
    buf = dy if in_place else jnp.zeros_like(x)
    d_consts = jax.tree.map(jnp.zeros_like, consts)
    lam = end_cotangent(g)
    if rest:
        lam, dxr, d_consts[rest] = piece_vjp(h_rest, n * k, rest, lam, cut(dy, n * k, rest))
        buf = put(buf, dxr, n * k)

    def back(carry: Any, item: tuple[Array, Array]) -> tuple[Any, None]:
        lam, buf, acc = carry
        i, h = item
        lam, dxi, dci = piece_vjp(h, i * k, k, lam, cut(buf if in_place else dy, i * k, k))
        return (lam, put(buf, dxi, i * k), jax.tree.map(jnp.add, acc, dci)), None

    (_, dx, d_consts[k]), _ = jax.lax.scan(
        back, (lam, buf, d_consts[k]), (jnp.arange(n), entering), reverse=True
    )
    return dx, d_consts


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
    backward_pieces: int = BACKWARD_PIECES,
    piece_multiple: int = 1,
) -> tuple[Array, Any]:
    """A linear recurrence over time sharded along mesh axis ``axis``; call inside shard_map.

    ``run(h0, x, resets, mask) -> (h_T, y)`` runs the recurrence ``h_t = a h_{t−1} + u_t`` (with
    ``u`` and the outputs ``y`` any per-step functions of ``x`` and ``h``) over this device's
    chunk in forward time, with the kernels' resets and padding (see
    :mod:`recurrent_zoo.scan.time`). It is run twice: from a zero state, for the chunk's end
    state, then from the carry-in that :func:`carry_in` gives.

    Its backward pass (a custom VJP, see above) runs ``backward_pieces`` pieces of the chunk
    at a time from their entering states, kept by one more forward scan, reading x and ∂y in
    place: it keeps a piece's residuals (fewer where ``run`` bounds its own backward memory, as
    ``remat_chunk`` does), never a copy of x, ∂y or ∂x. ``run``'s closed-over arrays (the
    layer's parameters) get their cotangents through :func:`jax.closure_convert`.

    Args:
      run: the local scan, as above; states [B, N] (for blocks: [B, H·d], heads contiguous).
      a: the recurrence's coefficient, diagonal ``[N]`` or blocks ``[H, d, d]``, as ``run``
        uses it: it gets no cotangent of its own (the parameters ``run`` closes over get it all).
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
      backward_pieces: the backward pass's pieces (each ⌈T/pieces⌉ steps, rounded up to a
        multiple of ``piece_multiple``).
      piece_multiple: the backward pieces' steps are a multiple of this: the chunk length of a
        ``run`` chunked by :func:`~recurrent_zoo.scan.remat_chunks`, so that its chunks tile
        each piece (a piece ending inside a chunk costs copies of the piece's arrays).

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

    checks.positive_int(backward_pieces, "backward_pieces")
    checks.positive_int(piece_multiple, "piece_multiple")
    k = -(-T // backward_pieces)
    k = min(-(-k // piece_multiple) * piece_multiple, T)
    # The closed-over arrays of `run` (the layer's parameters) become explicit arguments of the
    # custom VJP below, so that their cotangents come out of its backward pass; one conversion
    # per length it is run on (the whole chunk, the backward pass's pieces).
    runs: dict[int, Callable[..., tuple[Any, Any]]] = {}
    consts: dict[int, list[Array]] = {}
    for size in {T, k, T % k} - {0}:
        runs[size], consts[size] = jax.closure_convert(
            _sliced(run, size, time_axis), _varying(h0, axis), 0, x, resets, mask
        )

    def forward(cs: dict, a: Array, h0: Array, x: Array, r: Any, m: Any) -> Any:
        whole = lambda h: runs[T](h, 0, x, r, m, *cs[T])
        end, _ = whole(_varying(jnp.zeros_like(h0), axis))
        transfer = chunk_transfer(a, batch, T, r, m, structure, time_axis=time_axis)
        carry, final = carry_in(
            transfer, heads(end), heads(h0), axis, structure=structure, reverse=reverse
        )
        carry = _varying(carry.reshape(h0.shape), axis)
        _, y = whole(carry)
        return (final.reshape(h0.shape), y), (cs, x, r, m, carry, transfer)

    @jax.custom_vjp
    def parallel(cs: dict, a: Array, h0: Array, x: Array, r: Any, m: Any) -> Any:
        return forward(cs, a, h0, x, r, m)[0]

    def backward(res: tuple[Any, ...], cts: tuple[Array, Any]) -> tuple[Any, ...]:
        # The gradient of the unsharded scan restricted to this chunk is one backward pass of
        # the second run, from its carry-in, given the cotangent of its end state: the adjoint
        # entering from the next chunk (in visiting order). Those adjoints follow the forward
        # carries' exclusive scan, transposed and run the other way: λ_end,i = ∂c_next and
        # ∂c_i = g_i + Φ_iᵀ λ_end,i, with g_i the carry-in's cotangent from this chunk's own
        # outputs (a backward pass of the adjoint alone, no ∂x). So one ∂x per device.
        cs, x, r, m, carry, transfer = res
        d_final, dy = cts
        transposed = transfer if structure == "diagonal" else jnp.swapaxes(transfer, -1, -2)
        d_h0 = []

        def end_cotangent(g: Array) -> Array:
            d_end, first = carry_in(
                transposed,
                heads(g),
                heads(d_final),
                axis,
                structure=structure,
                reverse=not reverse,
            )
            d_h0.append(first.reshape(h0.shape))
            return _varying(d_end.reshape(h0.shape), axis)

        pieces = {size: runs[size] for size in cs if size != T or size == k}
        dx, d_cs = backward_in_pieces(
            pieces,
            {size: cs[size] for size in pieces},
            carry,
            (x, r, m),
            dy,
            end_cotangent,
            k,
            time_axis=time_axis,
        )
        d_cs = {size: d_cs.get(size, jax.tree.map(jnp.zeros_like, cs[size])) for size in cs}
        return d_cs, None, d_h0[0], dx, None, None

    parallel.defvjp(forward, backward)
    final, y = parallel(consts, a, h0, x, resets, mask)
    if reverse:
        y = jax.tree.map(lambda z: jnp.flip(z, time_axis), y)
    return final, y
