"""Every layer × every scan backend × every front-end (linen, NNX) against the plain NumPy
references of tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from harness import (
    FRONTEND_CASE_PARAMS,
    FRONTEND_CONFIG_PARAMS,
    B,
    Case,
    D,
    N,
    T,
    assert_close,
    inputs,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_plain_sequence_matches_reference(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = case.call(x, h0)
    h_ref, y_ref = case.reference(x, h0)
    assert y.shape == (B, T, case.d_out)
    assert_close(y, y_ref, "outputs")
    assert_close(h, h_ref, "final state")


# The contract under padding, resets and reversal; the patterns are drawn by hypothesis. Shapes
# stay fixed, so every example reuses the two compiled calls of the case.
patterns = st.tuples(
    st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B),
    st.lists(st.integers(0, T), min_size=B, max_size=B),
    st.booleans(),
)


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(pattern=patterns)
def test_contract_matches_reference(case: Case, pattern) -> None:
    resets, lengths, reverse = pattern
    resets, lengths = np.array(resets, bool), np.array(lengths, np.int32)
    x = inputs((B, T, D), seed=int(lengths.sum()))
    h0 = case.random_state((B,), seed=2)
    h, y = case.full(x, h0, resets, lengths, reverse=reverse)
    h_ref, y_ref = case.reference(x, h0, resets, lengths, reverse)
    assert_close(y, y_ref, f"outputs, resets={resets}, lengths={lengths}, reverse={reverse}")
    assert_close(h, h_ref, f"final state, resets={resets}, lengths={lengths}, reverse={reverse}")


@pytest.mark.parametrize("case", FRONTEND_CONFIG_PARAMS)
def test_step_matches_reference_step(case: Case) -> None:
    x_t = inputs((B, D), seed=5)
    h = case.random_state((B,), seed=6)
    h1, y1 = case.step(h, x_t)
    step = case.reference_step()
    for b in range(B):
        h_ref, y_ref = step(case.reference_state(h[b]), x_t[b].astype(np.float64))
        assert_close(h1[b], h_ref, "state")
        assert_close(y1[b], y_ref, "output")


@pytest.mark.parametrize(
    "name, gates, torch_step",
    [("gru", 3, ref.torch_gru_step), ("lstm", 4, ref.torch_lstm_step)],
    ids=["gru", "lstm"],
)
def test_gated_layers_match_pytorch_equations(name: str, gates: int, torch_step) -> None:
    """Weights drawn in PyTorch's layout (weight_ih [G·N, D], rows in PyTorch's gate order: r, z,
    n for the GRU, i, f, g, o for the LSTM) and loaded as ours, which are their transposes."""
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.normal(size=(gates * N, D)), rng.normal(size=(gates * N, N)) / np.sqrt(N)
    b_ih, b_hh = rng.normal(size=gates * N), rng.normal(size=gates * N)
    params = {
        "input_kernel": w_ih.T,
        "recurrent_kernel": w_hh.T,
        "input_bias": b_ih,
        "recurrent_bias": b_hh,
    }
    params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    case = Case(name)
    x, h0 = inputs((B, T, D)), case.random_state((B,))
    h, y = case.layer().apply(
        {"params": params}, x, initial_state=case.to_layer_state(h0), return_state=True
    )
    h = case.from_layer_state(h)
    step = torch_step(w_ih, w_hh, b_ih, b_hh)
    for b in range(B):
        h_ref, y_ref = ref.run(step, x[b].astype(np.float64), h0[b].astype(np.float64))
        assert_close(y[b], y_ref, "outputs")
        assert_close(h[b], h_ref, "final state")


# -- the reference cell against the fused path -----------------------------------------------------
# Each layer's `cell` is its equations step by step, `sequence` the fused path the call runs; a
# loop of the one must give the other's outputs, final state and gradients. The fused calls are
# the ones the tests above compiled.
LOOP_RESETS = np.zeros((B, T), bool)
LOOP_RESETS[0, [2, 6]] = True
LOOP_RESETS[1, 4] = True
LOOP_LENGTHS = np.array([T - 1, T, 3], np.int32)


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_cell_loop_matches_fused_sequence(case: Case) -> None:
    x = inputs((B, T, D), seed=7)
    h0 = case.random_state((B,), seed=8)
    rng = np.random.default_rng(9)
    ct_h = case.random_state((B,), seed=10)
    ct_y = rng.normal(size=(B, T, case.d_out)).astype(np.float32)
    loop = case.cell_loop(x, h0, LOOP_RESETS, LOOP_LENGTHS, ct_h, ct_y)

    h, y = case.call(x, h0)
    assert_close(loop["plain"][1], y, "outputs of a loop of cell")
    assert_close(loop["plain"][0], h, "final state of a loop of cell")

    (dp, dx), (dp_loop, dx_loop) = case.vjp(x, h0, ct_h, ct_y), loop["vjp"]
    assert dp.keys() == dp_loop.keys() == case.params.keys()
    for k in dp:
        assert_close(dp_loop[k], dp[k], f"VJP in {k}")
    assert_close(dx_loop, dx, "VJP in x")

    for reverse in (False, True):
        h, y = case.full(x, h0, LOOP_RESETS, LOOP_LENGTHS, reverse=reverse)
        h_loop, y_loop = loop["reverse" if reverse else "forward"]
        assert_close(y_loop, y, f"outputs under resets and lengths, reverse={reverse}")
        assert_close(h_loop, h, f"final state under resets and lengths, reverse={reverse}")
