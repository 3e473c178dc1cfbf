"""Every scan strategy agrees with every other (outputs and VJPs), "auto" is one of them, and the
time bookkeeping of rz.scan (permutation, resets and padding) is right on its own."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import (
    CONFIGS,
    SCAN_METHODS,
    B,
    Case,
    D,
    T,
    assert_close,
    has_scan,
    inputs,
    jit,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import recurrent_zoo as rz

LINEAR_CONFIGS = [c for c, (name, _) in CONFIGS.items() if has_scan(name)]
BASELINE = SCAN_METHODS[0]
OTHER_METHODS = [
    pytest.param(Case(c, m), id=f"{c}-{m}") for c in LINEAR_CONFIGS for m in SCAN_METHODS[1:]
]

RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[2, 1] = True
RESETS[1, 6] = True  # inside the padding of sequence 1: ignored
LENGTHS = np.array([T, 5, 3], np.int32)


@functools.cache
def _value_and_grads(case: Case):
    """Outputs and gradients (variables, x, h0) of a random projection of (state, y).

    Reversed, with resets and padding: every piece of the time bookkeeping is inside the VJP.
    """
    layer = case.layer()
    rng = np.random.default_rng(7)
    cy = rng.normal(size=(B, T, case.d_out)).astype(np.float32)
    ch = (rng.normal(size=(B, 4)) + 1j * rng.normal(size=(B, 4))).astype(np.complex64)

    def loss(v, x, h0):
        h, y = layer.apply(
            v,
            x,
            initial_state=h0,
            resets=RESETS,
            lengths=LENGTHS,
            reverse=True,
            return_state=True,
        )
        return jnp.sum(y * cy) + jnp.sum(jnp.real(h * jnp.conj(ch))), (h, y)

    return jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("case", OTHER_METHODS)
def test_scan_methods_agree_on_outputs_and_vjps(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    (_, (h, y)), grads = _value_and_grads(case)(case.variables, x, h0)
    (_, (h1, y1)), grads1 = _value_and_grads(Case(case.config, BASELINE))(case.variables, x, h0)
    assert_close(y, y1, f"outputs vs {BASELINE}")
    assert_close(h, h1, f"final state vs {BASELINE}")
    for name, g, g1 in zip(["variables", "x", "initial_state"], grads, grads1):
        jax.tree_util.tree_map_with_path(
            lambda path, a, b, name=name: assert_close(
                a, b, f"gradient wrt {name}{jax.tree_util.keystr(path)}"
            ),
            g,
            g1,
        )


@pytest.mark.parametrize("config", LINEAR_CONFIGS)
def test_auto_is_one_of_the_methods(config: str) -> None:
    resolved = rz.scan.resolve_method("auto")
    assert resolved in SCAN_METHODS
    auto, concrete = Case(config, "auto"), Case(config, resolved)
    x = inputs((B, T, D))
    h0 = concrete.random_state((B,))
    h, y = auto.call(x, h0)
    h1, y1 = concrete.call(x, h0)
    assert_close(y, y1, "outputs")
    assert_close(h, h1, "final state")


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"scan must be one of .*'sequential'.*got 'fft'"):
        rz.scan.resolve_method("fft")


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, T), min_size=1, max_size=4))
def test_time_permutation_reverses_valid_parts(lengths) -> None:
    n = np.array(lengths, np.int32)
    perm = np.asarray(rz.scan.time_permutation(jnp.asarray(n), T)).T  # [T, B] → [B, T]
    for b, k in enumerate(n):
        np.testing.assert_array_equal(perm[b], [*range(k - 1, -1, -1), *range(k, T)])
    np.testing.assert_array_equal(
        np.take_along_axis(perm, perm, axis=1), np.tile(np.arange(T), (len(n), 1))
    )


def _linear_scan(a, u, h0, resets=None, mask=None, **kw):
    """rz.scan.linear_scan (time-major) called on the batch-major arrays of these tests."""
    tm = lambda z: None if z is None else jnp.swapaxes(jnp.asarray(z), 0, 1)
    h, hs = rz.scan.linear_scan(
        jnp.asarray(a), tm(u), jnp.asarray(h0), resets=tm(resets), mask=tm(mask), **kw
    )
    return h, tm(hs)


def _numpy_linear_scan(a, u, h0, resets, mask):
    h, hs = h0.copy(), []
    for t in range(u.shape[1]):
        h_new = np.where(resets[:, t, None], 0, h) * a + u[:, t]
        h = np.where(mask[:, t, None], h_new, h)
        hs.append(h)
    return h, np.stack(hs, 1)


def _diagonal_problem(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random real diagonal recurrence: a [4] in (−1, 1), u [B, T, 4], h0 [B, 4]."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, 4).astype(np.float32)
    u = rng.normal(size=(B, T, 4)).astype(np.float32)
    return a, u, rng.normal(size=(B, 4)).astype(np.float32)


@pytest.mark.parametrize("method", SCAN_METHODS)
def test_linear_scan_resets_and_padding(method: str) -> None:
    """A reset zeroes the state before u_t is read; a padded step holds it (resets there too)."""
    a, u, h0 = _diagonal_problem(seed=0)
    mask = np.arange(T)[None] < LENGTHS[:, None]
    h, hs = _linear_scan(a, u, h0, resets=RESETS, mask=mask, method=method)
    h_ref, hs_ref = _numpy_linear_scan(a, u, h0, RESETS, mask)
    assert_close(h, h_ref, "final state")
    # States at padded steps are left unspecified (the layers zero those outputs).
    assert_close(np.asarray(hs)[mask], hs_ref[mask], "states")


@pytest.mark.parametrize("method", SCAN_METHODS)
def test_block_scan_of_1x1_blocks_is_the_diagonal_scan(method: str) -> None:
    a, u, h0 = _diagonal_problem(seed=1)
    h, hs = _linear_scan(a, u, h0, method=method)
    hb, hsb = _linear_scan(
        a[:, None, None], u[..., None], h0[..., None], method=method, structure="block"
    )
    assert_close(hb[..., 0], h, "final state")
    assert_close(hsb[..., 0], hs, "states")


K = rz.scan.Kernel
KERNEL_TABLE = [
    # (scan, structure, complex_state, backend, kernel)
    ("associative", "diagonal", False, "cpu", K.ASSOCIATIVE),
    ("associative", "diagonal", True, "cpu", K.ASSOCIATIVE),
    ("associative", "block", False, "cpu", K.ASSOCIATIVE),
    ("associative", "dense", False, "gpu", K.ASSOCIATIVE),
    ("sequential", "diagonal", False, "gpu", K.SEQUENTIAL),
    ("sequential", "diagonal", True, "gpu", K.COMPLEX_SPLIT),
    ("sequential", "block", False, "cpu", K.SEQUENTIAL),
    ("sequential", "dense", False, "tpu", K.MATMUL_CELL),
    ("auto", "diagonal", False, "cpu", K.SEQUENTIAL),
    ("auto", "diagonal", True, "cpu", K.COMPLEX_SPLIT),
    ("auto", "diagonal", False, "gpu", K.ASSOCIATIVE),
    ("auto", "diagonal", True, "tpu", K.ASSOCIATIVE),
    ("auto", "block", False, "gpu", K.SEQUENTIAL),
    ("auto", "dense", False, "cpu", K.MATMUL_CELL),
    ("auto", "dense", False, "gpu", K.MATMUL_CELL),
]


@pytest.mark.parametrize("scan, structure, complex_state, backend, kernel", KERNEL_TABLE)
def test_select_kernel_maps_each_request_to_the_documented_kernel(
    scan, structure, complex_state, backend, kernel
) -> None:
    got = rz.scan.select_kernel(scan, structure, complex_state=complex_state, backend=backend)
    assert got is kernel
    # An explicit request is honoured; "auto" runs one of the explicit methods.
    assert (got.method == scan) if scan != "auto" else (got.method in SCAN_METHODS)


def test_resolve_method_is_the_selected_kernels_method() -> None:
    for structure in ("diagonal", "block"):
        for method in rz.scan.METHODS:
            want = rz.scan.select_kernel(method, structure).method
            assert rz.scan.resolve_method(method, structure) == want


def test_select_kernel_rejects_bad_requests_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"scan must be one of \['auto', 'sequential', "):
        rz.scan.select_kernel("fft")
    with pytest.raises(ValueError, match=r"structure must be one of .*got 'triangular'"):
        rz.scan.select_kernel("auto", "triangular")
    with pytest.raises(ValueError, match=r"complex_state needs structure 'diagonal', got 'block'"):
        rz.scan.select_kernel("auto", "block", complex_state=True)
    a, u, h0 = _diagonal_problem(seed=2)
    with pytest.raises(ValueError, match=r"method must be one of .*got 'fft'"):
        _linear_scan(a, u, h0, method="fft")


def test_layers_run_the_selected_kernel(monkeypatch) -> None:
    """The complex diagonal layers reach complex_diagonal_scan exactly when it is selected."""
    calls = []
    real = rz.scan.complex_diagonal_scan
    monkeypatch.setattr(
        rz.scan, "complex_diagonal_scan", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    x = inputs((B, T, D))
    for method in SCAN_METHODS:
        calls.clear()
        layer = rz.LRU(hidden_size=4, scan=method)
        layer.apply(layer.init(jax.random.key(0), x), x)
        selected = rz.scan.select_kernel(method, "diagonal", complex_state=True)
        assert bool(calls) == (selected is K.COMPLEX_SPLIT), method


def test_time_helpers_are_time_major_with_a_batch_major_option() -> None:
    n = jnp.asarray(LENGTHS)
    mask = rz.scan.valid_mask(n, T)
    assert mask.shape == (T, B)
    np.testing.assert_array_equal(mask.T, np.arange(T)[None] < LENGTHS[:, None])
    np.testing.assert_array_equal(rz.scan.valid_mask(n, T, time_axis=-1), mask.T)
    x = inputs((T, B, D))
    for perm, k in ((rz.scan.time_permutation(n, T), LENGTHS[1]), (None, T)):
        y = rz.scan.reverse_time(x, perm)
        np.testing.assert_array_equal(y[:k, 1], x[:k, 1][::-1])
        np.testing.assert_array_equal(y[k:, 1], x[k:, 1])
        y_bm = rz.scan.reverse_time(jnp.swapaxes(x, 0, 1), perm, time_axis=1)
        np.testing.assert_array_equal(jnp.swapaxes(y_bm, 0, 1), y)
    with pytest.raises(ValueError, match=r"time_axis must be 0 .* or 1 .*got 2"):
        rz.scan.reverse_time(x, None, time_axis=2)
