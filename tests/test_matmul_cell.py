"""rz.scan.scan_matmul_cell against plain autodiff of the same step loop.

The scan has its own JVP (and, for ``elementwise`` cells, keeps the cell's diagonal Jacobians
instead of re-running it), so outputs, VJPs and JVPs are each checked against a ``lax.scan`` over
the same step that JAX differentiates by itself, in float64, through resets and padding, with a
partial additive input ``pre``, a bias, a cell that ignores its state and a cell with parameters,
with the batch run as one group of rows and as uneven groups, and with states of one array or
of two blocks (``(c, h)``, as the LSTM's).
jacfwd against grad through the layers themselves is in test_gradients.py.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz

T, B, N = 6, 3, 4


def gru_cell(q, h, a, u):  # pre covers r and z; u is the candidate's input part
    r, z = jax.nn.sigmoid(a[..., :N]), jax.nn.sigmoid(a[..., N : 2 * N])
    return (1 - z) * jnp.tanh(u + r * a[..., 2 * N :]) + z * h


def elman_cell(q, h, a, u):  # ignores h and u: J_h = 0
    return jnp.tanh(a)


def gated_cell(q, h, a, u):  # parameters and a two-block u leaf
    return jnp.tanh(q["g"] * a + u[0][..., :N]) * jax.nn.sigmoid(u[0][..., N:]) + q["c"] * h


def norm_cell(q, h, a, u):  # mixes features: not elementwise
    a = a - a.mean(-1, keepdims=True)
    return jnp.tanh(a * jax.lax.rsqrt((a * a).mean(-1, keepdims=True) + 1e-5) * q["g"] + u)


def lstm_cell(q, s, a, u):  # a two-block state (c, h); h is read only through a
    i, f, g, o = jnp.split(a, 4, axis=-1)
    c = jax.nn.sigmoid(f) * s[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def peephole_cell(q, s, a, u):  # two blocks, parameters, and both blocks read directly
    c = jnp.tanh(a[..., :N] + q["p"] * s[0] + u) + 0.5 * s[1]
    return c, jax.nn.sigmoid(a[..., N:] + q["p"] * c) * jnp.tanh(c)


def norm_lstm_cell(q, s, a, u):  # two blocks, mixing features: not elementwise
    c, h = lstm_cell(q, s, a, u)
    return c, norm_cell(q, None, h, u)


CELLS = {
    # name: (cell, K, pre width, u shapes, params, elementwise allowed, state blocks)
    "gru": (gru_cell, 3 * N, 2 * N, (T, B, N), {}, True, 1),
    "elman": (elman_cell, N, N, None, {}, True, 1),
    "gated": (gated_cell, N, 0, [(T, B, 2 * N)], {"g": (N,), "c": (N,)}, True, 1),
    "norm": (norm_cell, N, N, (T, B, N), {"g": (N,)}, False, 1),
    "lstm": (lstm_cell, 4 * N, 4 * N, None, {}, True, 2),
    "peephole": (peephole_cell, 2 * N, N, (T, B, N), {"p": (N,)}, True, 2),
    "norm_lstm": (norm_lstm_cell, 4 * N, 3 * N, (T, B, N), {"g": (N,)}, False, 2),
}


def _problem(name: str):
    cell, k, k_pre, u_shape, p_shapes, _, blocks = CELLS[name]
    rng = np.random.default_rng(0)
    normal = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float64)
    u = (
        None
        if u_shape is None
        else [normal(*s) for s in u_shape]
        if isinstance(u_shape, list)
        else normal(*u_shape)
    )
    args = {
        "kernel": normal(N, k) / 2,
        "bias": normal(k),
        "params": {n: normal(*s) for n, s in p_shapes.items()},
        "pre": normal(T, B, k_pre) if k_pre else None,
        "u": u,
        "h0": normal(B, N) if blocks == 1 else tuple(normal(B, N) for _ in range(blocks)),
    }
    resets = np.zeros((T, B), bool)
    resets[2, 0] = resets[4, 2] = True
    mask = np.arange(T)[:, None] < np.array([T, 4, 5])[None, :]
    return cell, args, jnp.asarray(resets), jnp.asarray(mask)


def _reference(cell, kernel, bias, params, pre, u, h0, resets, mask):
    """The same recurrence as one plain lax.scan, differentiated by JAX itself."""

    def body(h_prev, inp):
        pre_t, u_t, r_t, m_t = inp
        h = jax.tree.map(lambda x: jnp.where(r_t[:, None], 0.0, x), h_prev)
        a = jax.tree.leaves(h)[-1] @ kernel + bias
        if pre_t is not None:
            a = a.at[:, : pre_t.shape[-1]].add(pre_t)
        new = cell(params, h, a, u_t)
        h_new = jax.tree.map(lambda x, y: jnp.where(m_t[:, None], x, y), new, h_prev)
        return h_new, jax.tree.leaves(h_new)[-1]

    return jax.lax.scan(body, h0, (pre, u, resets, mask))


def _ours(elementwise, groups=None):
    def f(cell, kernel, bias, params, pre, u, h0, resets, mask):
        return rz.scan.scan_matmul_cell(
            cell,
            kernel,
            params,
            h0,
            u,
            pre=pre,
            bias=bias,
            resets=resets,
            mask=mask,
            elementwise=elementwise,
            groups=groups,
        )

    return f


CASES = [
    pytest.param(name, e, g, id=f"{name}-{'elementwise' if e else 'general'}-groups{g}")
    for name, spec in CELLS.items()
    for e in ((False, True) if spec[5] else (False,))
    for g in (1, 2)  # B = 3 rows: one group, or uneven groups of 2 and 1 rows
]
DIFF = ("kernel", "bias", "params", "pre", "u", "h0")


@pytest.mark.parametrize("name, elementwise, groups", CASES)
def test_matmul_cell_scan_values_vjps_and_jvps(name: str, elementwise: bool, groups: int) -> None:
    with jax.enable_x64(True):
        cell, args, resets, mask = _problem(name)
        ours, ref = _ours(elementwise, groups), _reference

        def run(fn, diff):
            return fn(cell, *diff, resets, mask)

        diff = tuple(args[k] for k in DIFF)
        out, out_ref = run(ours, diff), run(ref, diff)
        chex.assert_trees_all_close(out, out_ref, rtol=1e-10, atol=1e-12)

        rng = np.random.default_rng(1)
        cot = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), out_ref)
        tan = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), diff)
        vjp = jax.vjp(lambda *d: run(ours, d), *diff)[1](cot)
        vjp_ref = jax.vjp(lambda *d: run(ref, d), *diff)[1](cot)
        chex.assert_trees_all_close(vjp, vjp_ref, rtol=1e-9, atol=1e-11)
        jvp = jax.jvp(lambda *d: run(ours, d), diff, tan)[1]
        jvp_ref = jax.jvp(lambda *d: run(ref, d), diff, tan)[1]
        chex.assert_trees_all_close(jvp, jvp_ref, rtol=1e-9, atol=1e-11)
    assert jnp.zeros(1).dtype == jnp.float32  # x64 did not leak


def test_bad_inputs_get_clear_errors() -> None:
    h0 = jnp.zeros((B, N))
    with pytest.raises(ValueError, match=r"u's last axis must be a multiple of the state size 4"):
        rz.scan.scan_matmul_cell(
            elman_cell, jnp.zeros((N, N)), {}, h0, jnp.zeros((T, B, 3)), elementwise=True
        )
    with pytest.raises(ValueError, match=r"pre's last axis must be a multiple of the state size 4"):
        rz.scan.scan_matmul_cell(
            gru_cell,
            jnp.zeros((N, 3 * N)),
            {},
            h0,
            jnp.zeros((T, B, N)),
            pre=jnp.zeros((T, B, 6)),
            elementwise=True,
        )
    with pytest.raises(ValueError, match=r"pre's last axis must be at most the kernel's 4"):
        rz.scan.scan_matmul_cell(elman_cell, jnp.zeros((N, N)), {}, h0, pre=jnp.zeros((T, B, 8)))
    with pytest.raises(ValueError, match=r"groups must be a positive int or None, got 0"):
        rz.scan.scan_matmul_cell(elman_cell, jnp.zeros((N, N)), {}, h0, groups=0)


def test_batch_groups() -> None:
    assert rz.scan.batch_groups(3, 2) == (2, 1)
    assert rz.scan.batch_groups(2, 5) == (1, 1)
    assert rz.scan.batch_groups(32, 1) == (32,)
    assert rz.scan.batch_groups(8) == (8,)  # too few rows to split


def test_batch_groups_default_rule() -> None:
    rule = rz.scan.DEFAULT_BATCH_GROUPS
    assert (rule.groups, rule.min_rows, rule.backends) == (2, 16, ("cpu",))
    assert rule(16, backend="cpu") == 2
    assert rule(15, backend="cpu") == 1
    assert rule(64, backend="gpu") == 1
    expected = (16, 16) if jax.default_backend() == "cpu" else (32,)
    assert rz.scan.batch_groups(32) == expected


def test_batch_groups_default_rule_can_be_replaced(monkeypatch) -> None:
    """set_batch_groups_rule changes what groups=None means, for the scan and for the layers; the
    argument (a layer's batch_groups field) still overrides it."""
    seen = []
    real = rz.scan.matmul_cell.batch_groups
    monkeypatch.setattr(
        rz.scan.matmul_cell, "batch_groups", lambda *a: seen.append(real(*a)) or seen[-1]
    )
    backend = jax.default_backend()
    x = jnp.ones((8, T, 3))

    def grouping(**fields):
        seen.clear()
        layer = rz.GRU(hidden_size=N, **fields)
        layer.apply(layer.init(jax.random.key(0), x), x)
        return seen[-1]

    assert grouping() == (8,)  # the shipped rule: too few rows to split
    previous = rz.scan.set_batch_groups_rule(
        rz.scan.BatchGroupsRule(groups=3, min_rows=4, backends=(backend,))
    )
    try:
        assert previous == rz.scan.DEFAULT_BATCH_GROUPS
        assert rz.scan.batch_groups(8) == (3, 3, 2)
        assert rz.scan.batch_groups(3) == (3,)  # below min_rows
        assert rz.scan.batch_groups(8, 1) == (8,)
        assert grouping() == (3, 3, 2)
        assert grouping(batch_groups=2) == (4, 4)
    finally:
        rz.scan.set_batch_groups_rule(None)
    assert rz.scan.batch_groups(8) == (8,)
    with pytest.raises(ValueError, match=r"groups must be a positive int, got 0"):
        rz.scan.BatchGroupsRule(groups=0)
    with pytest.raises(TypeError, match=r"rule must be a BatchGroupsRule or None, got int"):
        rz.scan.set_batch_groups_rule(2)
