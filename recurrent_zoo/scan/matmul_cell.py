"""The matmul-cell scan: a cell with one recurrent matmul, given its own JVP.

A cell ``s_t = cell(params, s̃_{t−1}, a_t, u_t)`` with ``a_t = h̃_{t−1} @ W + b + [pre_t | 0]`` (the
Elman RNNs, the GRU, the LSTM, one dense linear block) is run by :func:`scan_matmul_cell`, which
owns the matmul so that differentiation can treat it as a whole (see the comment below).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrent_zoo.scan.strategy import batch_groups, project_in_loop
from recurrent_zoo.scan.time import float_flags, hold, reset

Array = jax.Array

# -- why the scan has its own JVP ------------------------------------------------------------
#
# Reverse-mode autodiff of lax.scan over such a cell accumulates the kernel's gradient as one
# small [N, B] × [B, K] outer product per step, read-modify-writing an [N, K] accumulator in
# the loop, and keeps the cell's intermediates step by step. Giving the scan its own JVP moves
# the parameter tangents out of the loop: the kernel's enters as H̃ @ dW over all T·B rows at
# once, whose transpose is one big matmul H̃ᵀ @ Ḡ after the reverse loop, and the loop carries
# dh alone. Forward mode (jvp, jacfwd) uses the rule as is.
#
# A cell that acts feature by feature (``elementwise``) has diagonal Jacobians: the forward loop
# emits them, a few vectors per step computed while the step's values are in cache. Everything
# that does not depend on dh is then formed over all steps at once, outside the loop,
#   i_t = Σ_k c_a,k ⊙ (h̃_{t−1} dW + db + dp_t)_k + Σ_k c_u,k ⊙ du_t,k,
# and the loop is  dh_t = c_h ⊙ dh̃_{t−1} + Σ_k c_a,k ⊙ (dh̃_{t−1} W)_k + i_t:  no cell is
# re-evaluated, and its transpose, the reverse loop, is  g ↦ c_h ⊙ g + (c_a ⊙ [g | … | g]) Wᵀ
# storing only g. On the CPU the per-step work outside the matmuls, and the large arrays the
# loops write, are what cost; this removes most of both.
#
# Both loops can run the batch as independent groups of rows (``Spec.sizes``), each with its
# own matmul and cell per step, so that a multi-core CPU runs the groups' small per-step
# operations side by side instead of splitting one [B, N] × [N, K] product over threads that
# wait on the slowest. How many groups is a speed setting chosen by
# :func:`~recurrent_zoo.scan.strategy.batch_groups`. Each group's coefficients are arrays of
# their own, which the tangent loop reads as they are.
#
# The forward pass without derivatives (the custom JVPs' primal) needs none of that, and the
# cost of the projected inputs themselves shows: projected for all steps at once, they are a
# [T, B, K'] array written by one big matmul and read back by the loop. With ``project`` the
# projection can instead be done step by step inside the loop, as Flax's cells do, where it runs
# alongside the recurrence (``Spec.stepwise``, chosen by
# :func:`~recurrent_zoo.scan.strategy.project_in_loop`). Either way the loop then writes each
# step's state over the input row it has just read, instead of into a fresh zero-filled buffer.
# Derivatives always project all steps at once. The measurements behind these choices are in
# ``benchmarks/speed-cpu.md`` and ``benchmarks/speed-cpu-lstm.md``.


@dataclasses.dataclass(frozen=True)
class Spec:
    """The static part of a matmul-cell scan: what is traced once, never differentiated.

    Attributes:
      cell: ``(params, s, a, u_t) -> s`` over a state tuple (one-array cells are wrapped).
      unroll: steps unrolled per loop iteration.
      elementwise: the cell acts feature by feature (its Jacobians are kept, see above).
      sizes: row counts of the batch groups run side by side.
      project: the input projection ``project(project_params, x) -> (pre, u)``, or None when
        ``pre`` and ``u`` are given.
      stepwise: with ``project``, the forward pass without derivatives projects each step inside
        the loop.
    """

    cell: Callable[[Any, tuple, Array, Any], tuple]
    unroll: int
    elementwise: bool
    sizes: tuple[int, ...]
    project: Callable[[Any, Array], tuple[Array | None, Any]] | None = None
    stepwise: bool = False


class Operands(NamedTuple):
    """The arrays of a matmul-cell scan (a pytree; tangents come in the same structure).

    Attributes:
      kernel: W [N, K].
      bias: b [K] or None.
      params: pytree of the cell's other parameters.
      pre: [T, B, K'] added to the first K' columns of the pre-activation, or None.
      u: pytree of per-step inputs the cell reads, leaves [T, B, ...], or None.
      s0: the initial state, a tuple of [B, N] blocks.
      keep: [T, B, 1] float, 0 where a reset is asked (None: no resets).
      valid: [T, B, 1] float, 0 at padded steps (None: no padding).
    """

    kernel: Array
    bias: Array | None
    params: Any
    pre: Array | None
    u: Any
    s0: tuple[Array, ...]
    keep: Array | None
    valid: Array | None


def matmul(h: Array, kernel: Array, out_dtype: Any = None) -> Array:
    """``h [..., D] @ kernel [D, K]`` in the kernel's dtype, returned in ``out_dtype`` (h's).

    Leading axes are flattened into the rows of one 2-D matmul, which XLA's CPU backend runs
    faster than a dot with batch dimensions.
    """
    out = jnp.dot(h.reshape(-1, h.shape[-1]).astype(kernel.dtype), kernel)
    return out.reshape(*h.shape[:-1], kernel.shape[-1]).astype(out_dtype or h.dtype)


def _matmul_t(h: Array, kernel_t: Array) -> Array:
    """``h [B, N] @ kernel_tᵀ`` for ``kernel_t [K, N]``, in h's dtype.

    Its transpose in h is the plain matmul ``g @ kernel_t``, which XLA's CPU backend runs faster
    than ``g @ kernelᵀ`` contracting the kernel's columns (the reverse loop's one matmul).
    """
    dims = (((h.ndim - 1,), (1,)), ((), ()))
    return jax.lax.dot_general(h.astype(kernel_t.dtype), kernel_t, dims).astype(h.dtype)


def _blocks(x: Array, n: int) -> Array:
    """[..., m·n] → [..., m, n]: the per-feature blocks of a cell input."""
    return x.reshape(*x.shape[:-1], x.shape[-1] // n, n)


def _diagonal_apply(c: Array, x: Array) -> Array:
    """Σ_k c_k ⊙ x_k: a diagonal Jacobian ``c [.., m, n]`` applied to ``x [.., m·n]``."""
    return (c * _blocks(x, c.shape[-1])).sum(-2)


def _reads(f: Callable, x: Array) -> bool:
    """Whether ``f(x)`` depends on x at all (a cell that ignores its state has J_h = 0)."""
    jaxpr = jax.make_jaxpr(f)(x).jaxpr
    v = jaxpr.invars[0]
    return v in jaxpr.outvars or any(v is w for e in jaxpr.eqns for w in e.invars)


def _diagonal_jacobians(f: Callable, s: tuple, a: Array, u: Any) -> tuple[tuple, Any]:
    """``f(s, a, u)`` and its diagonal Jacobians ``(c_s, c_a, c_u)``, one entry per output block.

    ``s`` is the state as a tuple of [.., n] blocks and ``f`` returns one of the same structure.
    ``f`` must act feature by feature: feature i of every output block reads feature i of each
    state block and entry ``k·n + i`` of ``a`` and of each leaf of ``u``; a tangent of 1s on one
    block then gives that block's diagonals for every output block at once. For output block j:
    ``c_s[j][i]`` [.., n] (None for a state block f ignores), ``c_a[j]`` [.., m, n] and
    ``c_u[j]``, a list with one [.., m, n] per leaf of ``u``, split into blocks as the tangent
    loop reads them.
    """
    n = s[-1].shape[-1]
    s_new, lin = jax.linearize(f, s, a, u)
    tree = jax.tree.structure(u)
    zeros = [jnp.zeros_like(x) for x in (*s, a, *jax.tree.leaves(u))]
    ns = len(s)

    def columns(i: int) -> list[Array]:
        """Per output block, the diagonals of its Jacobian in input ``zeros[i]``: [.., m, n]."""
        x = zeros[i]
        m = x.shape[-1] // n
        cols = []
        for k in range(m):
            e = jnp.zeros((m, n), x.dtype).at[k].set(1).reshape(-1)
            t = [*zeros[:i], jnp.broadcast_to(e, x.shape), *zeros[i + 1 :]]
            cols.append(lin(tuple(t[:ns]), t[ns], jax.tree.unflatten(tree, t[ns + 1 :])))
        return [jnp.stack(c, axis=-2) for c in zip(*cols, strict=True)]

    def reads(i: int) -> bool:
        return _reads(lambda x: f((*s[:i], x, *s[i + 1 :]), a, u), s[i])

    by_block = [[c[..., 0, :] for c in columns(i)] if reads(i) else None for i in range(ns)]
    c_s = [[None if c is None else c[j] for c in by_block] for j in range(ns)]
    c_u = list(zip(*(columns(i) for i in range(ns + 1, len(zeros))), strict=True))
    c_u = [list(c) for c in c_u] if c_u else [[] for _ in range(ns)]
    return s_new, (c_s, columns(ns), c_u)


def pre_activation(
    h: Array, kernel: Array, bias: Array | None = None, pre: Array | None = None
) -> Array:
    """``a = h @ kernel + bias + [pre | 0]``, in h's dtype: a matmul cell's pre-activation."""
    a = matmul(h, kernel)
    if bias is not None:
        a = a + bias.astype(a.dtype)
    return a if pre is None else _add_pre(a, pre)


def _add_pre(a: Array, pre: Array, in_place: bool = True) -> Array:
    """``a + [pre | 0]``.

    In place where ``a`` is kept (a concatenate there makes XLA's CPU backend pick between
    operands per element); as a concatenate where only the cell reads ``a``: its slices at block
    boundaries then read the two parts directly, and the whole step fuses into one loop.
    """
    k = pre.shape[-1]
    if k == a.shape[-1]:
        return a + pre
    if in_place:
        return jax.lax.dynamic_update_slice_in_dim(a, a[..., :k] + pre, 0, axis=-1)
    return jnp.concatenate([a[..., :k] + pre, a[..., k:]], axis=-1)


def _rows(x: Array | None, sizes: tuple[int, ...], axis: int = 0) -> list:
    """x split along ``axis`` into groups of ``sizes`` rows (None stays None)."""
    if x is None or len(sizes) == 1:
        return [x] * len(sizes)
    # lax.split rather than slices: its transpose is one concatenate, not a pad per group.
    return list(jax.lax.split(x, sizes, axis=axis))


def _tree_rows(tree: Any, sizes: tuple[int, ...], axis: int = 0) -> list:
    leaves, treedef = jax.tree.flatten(tree)
    split = [_rows(x, sizes, axis) for x in leaves]
    return [jax.tree.unflatten(treedef, [s[g] for s in split]) for g in range(len(sizes))]


def _cat(xs: list[Array], axis: int = 0) -> Array:
    return xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=axis)


def _matmul_forward(
    spec: Spec, ops: Operands, residuals: set[str] | None = None
) -> tuple[tuple[Array, ...], Any]:
    """The forward loop over the state tuple ``ops.s0``, whose last block the matmul reads.

    Returns ``(s_T, ys)`` with ys the last block's values [T, B, n]. ``residuals``, a set among
    "a", "jacobians" and "states", makes ys ``(hs, a, per-group coefficients, states)`` with
    None for what was not asked: what the tangent reads (see :func:`_matmul_scan_jvp`).
    """
    cell, unroll, sizes = spec.cell, spec.unroll, spec.sizes
    kernel, bias, params, pre, u, s0, keep, valid = ops
    residuals = residuals or set()
    jacobians, keep_a, keep_states = (k in residuals for k in ("jacobians", "a", "states"))

    def group_step(s_prev, pre_t, u_t, k_t, m_t):
        s = tuple(reset(k_t, x) for x in s_prev)
        a = pre_activation(s[-1], kernel, bias, pre_t)
        if jacobians:
            s_new, coeffs = _diagonal_jacobians(partial(cell, params), s, a, u_t)
        else:
            s_new, coeffs = cell(params, s, a, u_t), None
        return tuple(map(partial(hold, m_t), s_new, s_prev)), a, coeffs

    def body(s_prev, xs_t):
        pre_t, u_t, k_t, m_t = xs_t
        groups = zip(
            s_prev,
            _rows(pre_t, sizes),
            _tree_rows(u_t, sizes),
            _rows(k_t, sizes),
            _rows(m_t, sizes),
            strict=True,
        )
        s_new, a, coeffs = zip(*(group_step(*g) for g in groups), strict=True)
        h = _cat([s[-1] for s in s_new])
        if not residuals:
            return s_new, h
        # Each group's coefficients stay arrays of their own: the tangent loop reads them as
        # they are (slicing them there would make JAX move the slices into a loop of its own).
        states = _tree_cat(s_new) if keep_states else None
        return s_new, (h, _cat(a) if keep_a else None, coeffs if jacobians else None, states)

    s0 = tuple(_tree_rows(s0, sizes))
    over = None if residuals else _overwritable(pre, u, s0)
    if over is None:
        s_T, ys = jax.lax.scan(body, s0, (pre, u, keep, valid), unroll=unroll)
        return _tree_cat(s_T), ys

    # Without residuals each step's h is written over the input row it has just read (pre, or
    # u when that is one array): no zero-filled buffer for the outputs, one large array fewer.
    def body_over(carry, xs_t):
        s_prev, buf = carry
        t, pre_t, u_t, k_t, m_t = xs_t
        read = jax.lax.dynamic_index_in_dim(buf, t, keepdims=False)
        pre_t, u_t = (read, u_t) if over == "pre" else (pre_t, read)
        s_new, h = body(s_prev, (pre_t, u_t, k_t, m_t))
        return (s_new, jax.lax.dynamic_update_index_in_dim(buf, h, t, 0)), None

    buf = pre if over == "pre" else u
    xs = (jnp.arange(buf.shape[0]), *((None, u) if over == "pre" else (pre, None)), keep, valid)
    (s_T, hs), _ = jax.lax.scan(body_over, (s0, buf), xs, unroll=unroll)
    return _tree_cat(s_T), hs


def _overwritable(pre: Array | None, u: Any, s0: tuple) -> str | None:
    """Which time-major input, "pre" or "u", has the shape and dtype of the outputs ``hs``."""
    h = s0[0][-1]
    like = lambda x: isinstance(x, jax.Array) and x.shape[1:] == (
        sum(g[-1].shape[0] for g in s0), h.shape[-1]) and x.dtype == h.dtype  # fmt: skip
    return "pre" if like(pre) else "u" if like(u) else None


def _one_block(cell: Callable, q: Any, s: tuple, a: Array, u_t: Any) -> tuple:
    """A cell over one array, as a cell over a one-block state tuple."""
    return (cell(q, s[0], a, u_t),)


def _tree_cat(groups: Any) -> Any:
    """The inverse of :func:`_tree_rows` over a sequence of per-group pytrees (row axis 0)."""
    return jax.tree.map(lambda *xs: _cat(list(xs)), *groups)


def _shift_in(x0: Array, xs: Array, keep: Array | None) -> Array:
    """The states each step reads, [T, B, ..]: x0 then xs[:-1], zeroed where a reset is asked."""
    x_in = jnp.concatenate([x0[None], xs[:-1]], axis=0)
    return x_in if keep is None else jnp.where(keep > 0, x_in, jnp.zeros_like(x_in))


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _matmul_scan(spec: Spec, ops: Operands) -> tuple[tuple[Array, ...], Array]:
    return _matmul_forward(spec, ops)


@_matmul_scan.defjvp
def _matmul_scan_jvp(spec: Spec, primals: tuple[Operands], tangents: tuple[Operands]):
    # With s̃_{t−1} the state after a reset, h̃ its last block, a_t = h̃ W + b + p_t and
    # s_t = cell(q, s̃, a_t, u_t):
    #   ds_t = J_s ds̃_{t−1} + J_a (dh̃_{t−1} W + h̃_{t−1} dW + db + dp_t) + J_u du_t + J_q dq.
    # The drive h̃ dW + db + dp is formed over all T·B rows at once; the loop carries ds alone.
    (ops,), (dops,) = primals, tangents
    cell, unroll, elementwise = spec.cell, spec.unroll, spec.elementwise
    kernel, _, params, _, u, s0, keep, valid = ops
    dkernel, dbias, dparams, dpre, du, ds0, _, _ = dops
    # A cell with parameters, or one without diagonal Jacobians, is re-linearised over every
    # step's whole input state; otherwise the last block (what the matmul reads) is enough.
    has_params = bool(jax.tree.leaves(params))
    need_states = len(s0) > 1 and (not elementwise or has_params)
    residuals = {"jacobians"} if elementwise else {"a"}
    residuals |= {"a"} if has_params else set()
    residuals |= {"states"} if need_states else set()
    s_T, (hs, a, coeffs, states) = _matmul_forward(spec, ops, residuals)
    h_in = _shift_in(s0[-1], hs, keep)
    s_in = tuple(map(partial(_shift_in, keep=keep), s0, states)) if need_states else (h_in,)
    if elementwise:
        ds_T, dhs = _elementwise_tangent(spec, ops, dops, s_in, a, coeffs)
        return (s_T, hs), (ds_T, dhs)
    drive = pre_activation(h_in, dkernel, dbias, dpre)

    def body(ds_prev, xs_t):
        s_t, a_t, u_t, d_t, du_t, k_t, m_t = xs_t
        ds = tuple(reset(k_t, x) for x in ds_prev)
        da = matmul(ds[-1], kernel) + d_t
        _, ds_new = jax.jvp(cell, (params, s_t, a_t, u_t), (dparams, ds, da, du_t))
        ds_new = tuple(map(partial(hold, m_t), ds_new, ds_prev))
        return ds_new, ds_new[-1]

    xs = (s_in, a, u, drive, du, keep, valid)
    ds_T, dhs = jax.lax.scan(body, ds0, xs, unroll=unroll)
    return (s_T, hs), (ds_T, dhs)


def _stepwise(project, cell):
    """The cell with the input projection done in the step: reads ``x_t``, not ``(pre_t, u_t)``."""

    def step_cell(qs, s, a, x_t):
        params, q_in = qs
        pre_t, u_t = project(q_in, x_t)
        return cell(params, s, a if pre_t is None else _add_pre(a, pre_t, in_place=False), u_t)

    return step_cell


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _projected_scan(
    spec: Spec, q_in: Any, x: Array, ops: Operands
) -> tuple[tuple[Array, ...], Array]:
    """:func:`_matmul_scan` on the inputs ``spec.project(q_in, x)``; ``ops.pre`` and ``ops.u`` are
    None."""
    if spec.stepwise:
        # Two steps per iteration at least: the runtime then overlaps one step's input products,
        # which do not wait for h, with the other step's recurrence.
        step_spec = dataclasses.replace(
            spec, cell=_stepwise(spec.project, spec.cell), unroll=max(spec.unroll, 2)
        )
        return _matmul_forward(step_spec, ops._replace(params=(ops.params, q_in), u=x))
    pre, u = spec.project(q_in, x)
    return _matmul_forward(spec, ops._replace(pre=pre, u=u))


def _instantiate(tree: Any) -> Any:
    is_zero = lambda t: isinstance(t, jax.custom_derivatives.SymbolicZero)
    return jax.tree.map(
        lambda t: jnp.zeros(t.shape, t.dtype) if is_zero(t) else t, tree, is_leaf=is_zero
    )


@partial(_projected_scan.defjvp, symbolic_zeros=True)
def _projected_scan_jvp(spec: Spec, primals: tuple, tangents: tuple):
    # Derivatives project all steps at once, as the tangent's terms over all steps need.
    q_in, x, ops = primals
    dq_in, dx, dops = tangents
    if isinstance(dx, jax.custom_derivatives.SymbolicZero):  # no dx @ W matmul of zeros
        (pre, u), (dpre, du) = jax.jvp(
            lambda q: spec.project(q, x), (q_in,), (_instantiate(dq_in),)
        )
    else:
        (pre, u), (dpre, du) = jax.jvp(spec.project, (q_in, x), (_instantiate(dq_in), dx))
    dops = _instantiate(dops)
    return jax.jvp(
        partial(_matmul_scan, spec),
        (ops._replace(pre=pre, u=u),),
        (dops._replace(pre=dpre, u=du),),
    )


def _elementwise_tangent(
    spec: Spec, ops: Operands, dops: Operands, s_in: tuple, a: Array | None, coeffs: tuple
) -> tuple[tuple[Array, ...], Array]:
    """The tangent loop of an elementwise cell, over the same batch groups as the forward loop
    (see the comment at the top); ``s_in`` are the states each step read, ``a`` the pre-activations
    (when the cell has parameters) and ``coeffs`` the forward loop's per-group Jacobians.
    Returns ``(ds_T, dhs)``."""
    cell, unroll, sizes = spec.cell, spec.unroll, spec.sizes
    kernel, _, params, _, u, _, keep, valid = ops
    dkernel, dbias, dparams, dpre, du, ds0, _, _ = dops
    h_in = s_in[-1]
    n = h_in.shape[-1]
    if dbias is None or dkernel.dtype != h_in.dtype:  # (a bf16 matmul would round ∂b)
        drive = pre_activation(h_in, dkernel, dbias)
    else:
        # [h̃ | 1] @ [dW; db]: reverse mode forms ∂b inside the ∂W matmul, not in a pass of its own.
        h_one = jnp.concatenate([h_in, jnp.ones_like(h_in[..., :1])], axis=-1)
        drive = matmul(h_one, jnp.concatenate([dkernel, dbias[None].astype(dkernel.dtype)]))
    extra = [None] * len(ds0)
    if jax.tree.leaves(params):  # other cell parameters, over all steps
        extra = jax.jvp(lambda q: cell(q, s_in, a, u), (params,), (dparams,))[1]
    groups = zip(
        coeffs,
        _rows(drive, sizes, 1),
        _rows(dpre, sizes, 1),
        _tree_rows(du, sizes, 1),
        _tree_rows(extra, sizes, 1),
        strict=True,
    )
    xs = []
    for (c_s, c_a, c_u), drive_g, dpre_g, du_g, extra_g in groups:
        drives = []
        for c_a_j, c_u_j, extra_j in zip(c_a, c_u, extra_g, strict=True):
            i = _diagonal_apply(c_a_j, drive_g)
            if dpre_g is not None:
                # A term of its own rather than added into the drive: reverse mode then forms
                # ∂pre from c_a and the cotangent directly, not by slicing (and re-adding) a
                # [T, B, K] one.
                i = i + _diagonal_apply(c_a_j[..., : dpre_g.shape[-1] // n, :], dpre_g)
            for c, d in zip(c_u_j, jax.tree.leaves(du_g), strict=True):
                i = i + _diagonal_apply(c, d)
            drives.append(i if extra_j is None else i + extra_j)
        xs.append((c_s, c_a, tuple(drives)))
    kernel_t = kernel.T

    def group_step(ds_prev, c_s, c_a, i_t, k_t, m_t):
        ds = tuple(reset(k_t, x) for x in ds_prev)
        da = _matmul_t(ds[-1], kernel_t)
        ds_new = []
        for c_s_j, c_a_j, i_j in zip(c_s, c_a, i_t, strict=True):
            d = _diagonal_apply(c_a_j, da) + i_j
            for c, x in zip(c_s_j, ds, strict=True):
                if c is not None:
                    d = d + c * x
            ds_new.append(d)
        return tuple(map(partial(hold, m_t), ds_new, ds_prev))

    def body(ds_prev, xs_t):
        coeffs_t, k_t, m_t = xs_t
        ds_new = tuple(group_step(*g) for g in zip(ds_prev, *zip(*coeffs_t), k_t, m_t, strict=True))
        return ds_new, _cat([ds[-1] for ds in ds_new])

    # Flags split outside the loop too: they are residuals, like the coefficients.
    xs = (xs, _rows(keep, sizes, 1), _rows(valid, sizes, 1))
    ds_T, dhs = jax.lax.scan(body, tuple(_tree_rows(ds0, sizes)), xs, unroll=unroll)
    return _tree_cat(ds_T), dhs


def scan_matmul_cell(
    cell: Callable[[Any, Any, Array, Any], Any],
    kernel: Array,
    params: Any,
    h0: Array | tuple[Array, ...],
    u: Any = None,
    *,
    pre: Array | None = None,
    bias: Array | None = None,
    resets: Array | None = None,
    mask: Array | None = None,
    unroll: int = 1,
    elementwise: bool = False,
    groups: int | None = None,
    project: Callable[[Any, Array], tuple[Array | None, Any]] | None = None,
    x: Array | None = None,
    project_params: Any = None,
) -> tuple[Any, Array]:
    """Runs ``s_t = cell(params, s̃, a_t, u_t)`` with ``a_t = h̃ @ kernel + bias + [pre_t | 0]``.

    The state ``s`` is one array ``h`` [B, N], or a tuple of [B, N] blocks whose last block ``h``
    is what the matmul reads and what is emitted (the LSTM's ``(c, h)``). ``s̃`` is ``s_{t−1}``,
    or zeros where a reset is asked, and ``h̃`` its last block; ``y_t = h_t``. The cell's one
    recurrent matmul is done here so that reverse mode forms the kernel's gradient in one matmul
    over all steps (see the comment in this module); results equal
    :func:`~recurrent_zoo.scan.scan_cell` over the same cell.

    Args:
      cell: ``(params, s, a [B, K], u_t) -> s`` with ``s`` as ``h0``; must not close over traced
        values (pass them in ``params``).
      kernel: [N, K] in the compute dtype; ``h @ kernel`` is returned in the state's dtype.
      params: pytree of the cell's other parameters.
      h0: [B, N] initial state, or a tuple of [B, N] blocks.
      u: per-step inputs pytree the cell reads, leaves [T, B, ...] (time-major).
      pre: [T, B, K'] inputs added to the first K' ≤ K columns of ``a_t``: the part of the
        input projection that enters the pre-activation additively.
      bias: [K], added to ``a_t``.
      resets: [T, B] bool; where True the state is zeroed before ``u_t`` is read.
      mask: [T, B] bool; where False the step is skipped (state held, a reset there ignored).
      unroll: steps unrolled per loop iteration.
      elementwise: the cell acts feature by feature: feature i of each output block reads only
        feature i of each state block and entries ``k·N + i`` of ``a`` and of each leaf of ``u``
        (``pre`` and the leaves [T, B, m·N]). Its Jacobians are then diagonal, and
        differentiation keeps them instead of re-running the cell.
      groups: how many groups of batch rows each step runs side by side (None: the default
        rule, see :func:`~recurrent_zoo.scan.batch_groups`); a speed setting only, results agree
        across groupings up to rounding.
      project: instead of ``pre`` and ``u``, the input projection
        ``project(project_params, x) -> (pre, u)`` of raw inputs ``x`` [T, B, D] (time-major),
        acting row by row (it is also called on one step, ``x_t`` [B', D]); must not close over
        traced values. Derivatives project all steps at once; the forward pass alone may project
        each step inside the loop (see :func:`~recurrent_zoo.scan.project_in_loop`). Results
        agree up to rounding.

    Returns:
      ``(s_T, hs [T, B, N])``: the final state, structured as ``h0``, and every step's ``h``;
      differentiable in kernel, bias, params, pre, u and h0 in both modes.
    """
    blocks = h0 if isinstance(h0, tuple) else (h0,)
    dt = blocks[-1].dtype
    n = blocks[-1].shape[-1]
    for i, b in enumerate(blocks):
        if b.shape != blocks[-1].shape or b.dtype != dt:
            raise ValueError(
                f"h0's blocks must share one shape and dtype, got block {i} {b.shape} {b.dtype} "
                f"and block {len(blocks) - 1} {blocks[-1].shape} {dt}"
            )
    if kernel.shape[0] != n:
        raise ValueError(
            f"kernel's first axis must be the state size {n}, got shape {kernel.shape}"
        )
    pre_shape, u_shape = (pre, u) if project is None else jax.eval_shape(project, project_params, x)
    if pre_shape is not None and pre_shape.shape[-1] > kernel.shape[-1]:
        raise ValueError(
            f"pre's last axis must be at most the kernel's {kernel.shape[-1]}, "
            f"got {pre_shape.shape}"
        )
    if elementwise:
        blocked = [
            ("kernel", kernel),
            ("pre", pre_shape),
            *(("u", leaf) for leaf in jax.tree.leaves(u_shape)),
        ]
        for name, b in blocked:
            if b is not None and b.shape[-1] % n:
                raise ValueError(
                    f"elementwise cell: {name}'s last axis must be a multiple of the state size "
                    f"{n}, got shape {b.shape}"
                )
    if not isinstance(h0, tuple):
        cell = partial(_one_block, cell)
    keep, valid = float_flags(resets, mask, dt)
    spec = Spec(cell, unroll, elementwise, batch_groups(blocks[-1].shape[0], groups))
    if project is None:
        s_T, hs = _matmul_scan(spec, Operands(kernel, bias, params, pre, u, blocks, keep, valid))
    else:
        width = sum(leaf.shape[-1] for leaf in jax.tree.leaves((pre_shape, u_shape)))
        spec = dataclasses.replace(spec, project=project, stepwise=project_in_loop(width, n))
        ops = Operands(kernel, bias, params, None, None, blocks, keep, valid)
        s_T, hs = _projected_scan(spec, project_params, x, ops)
    return (s_T if isinstance(h0, tuple) else s_T[0]), hs
