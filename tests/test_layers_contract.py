"""The sequence/step contract, layer against itself, for every layer × every scan backend ×
every front-end (linen, NNX)."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
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

# Resets with 2, 3 and 1 pieces: six pieces in all, run as two padded batches of B = 3.
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = True
RESETS[1, [2, 5]] = True


def _pieces(resets: np.ndarray) -> list[tuple[int, int, int]]:
    """(sequence, start, end) of every piece between resets."""
    out = []
    for b in range(resets.shape[0]):
        starts = [0, *np.flatnonzero(resets[b, 1:]) + 1]
        out += [(b, a, e) for a, e in zip(starts, [*starts[1:], resets.shape[1]])]
    return out


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_step_loop_matches_sequence_call(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = case.call(x, h0)
    hs, ys = case.step_loop(x, h0)
    chex.assert_shape(ys, (B, T, case.d_out))
    assert_close(ys, y, "outputs")
    assert_close(hs[:, -1], h, "final state")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_resets_equal_separate_pieces(case: Case, reverse: bool) -> None:
    """Each piece between resets runs as its own sequence (from h0: the first, or the last one
    under reverse); the pieces run here as padded sequences of a second call."""
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = case.full(x, h0, RESETS, reverse=reverse)
    pieces = _pieces(RESETS)
    assert len(pieces) == 2 * B
    for batch in (pieces[:B], pieces[B:]):
        xp = np.zeros_like(x)
        hp = np.zeros_like(h0)
        lengths = np.array([e - a for _, a, e in batch], np.int32)
        for i, (b, a, e) in enumerate(batch):
            xp[i, : e - a] = x[b, a:e]
            gets_h0 = (e == T) if reverse else (a == 0)
            hp[i] = h0[b] if gets_h0 else 0
        hq, yq = case.full(xp, hp, None, lengths, reverse=reverse)
        for i, (b, a, e) in enumerate(batch):
            assert_close(y[b, a:e], yq[i, : e - a], f"outputs of piece {b}:[{a}, {e})")
            if (a == 0) if reverse else (e == T):
                assert_close(h[b], hq[i], f"final state of sequence {b}")


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_lengths_equal_truncated_sequence(case: Case) -> None:
    k = T // 2
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    lengths = np.array([k, T, 0], np.int32)
    h, y = case.full(x, h0, None, lengths)
    h_k, y_k = case.call(x[:, :k], h0)
    h_T, y_T = case.call(x, h0)
    assert_close(h[0], h_k[0], "state after length k")
    assert_close(y[0, :k], y_k[0], "outputs before length k")
    assert_close(h[1], h_T[1], "state at full length")
    assert_close(y[1], y_T[1], "outputs at full length")
    assert_close(h[2], h0[2], "state at length 0 is the initial state")
    np.testing.assert_array_equal(np.asarray(y[0, k:]), 0, "outputs past the length")
    np.testing.assert_array_equal(np.asarray(y[2]), 0, "outputs at length 0")


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_reverse_equals_flipped_sequence(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = case.call(x, h0, reverse=True)
    h_f, y_f = case.call(x[:, ::-1], h0)
    assert_close(y, y_f[:, ::-1], "outputs")
    assert_close(h, h_f, "final state")


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_reverse_under_padding_flips_each_valid_part(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    lengths = np.array([T, 2, 5], np.int32)
    h, y = case.full(x, h0, None, lengths, reverse=True)
    x_flip = x.copy()
    for b, n in enumerate(lengths):
        x_flip[b, :n] = x[b, :n][::-1]
    h_f, y_f = case.full(x_flip, h0, None, lengths)
    for b, n in enumerate(lengths):
        assert_close(y[b, :n], y_f[b, :n][::-1], f"outputs of sequence {b}")
        np.testing.assert_array_equal(np.asarray(y[b, n:]), 0, "outputs past the length")
    assert_close(h, h_f, "final states")


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_initial_state_carries_a_split_sequence(case: Case) -> None:
    """Running x[:k] then x[k:] from the state reached equals one call (streaming)."""
    k = T // 2
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = case.call(x, h0)
    h1, y1 = case.call(x[:, :k], h0)
    h2, y2 = case.call(x[:, k:], h1)
    assert_close(np.concatenate([y1, y2], axis=1), y, "outputs")
    assert_close(h2, h, "final state")
    # ... and the initial state matters: a different one changes the first output.
    _, y0 = case.call(x[:, :k], np.zeros_like(h0))
    assert not np.allclose(np.asarray(y0[:, 0]), np.asarray(y1[:, 0]))


@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_reset_at_start_drops_initial_state(case: Case) -> None:
    x = inputs((B, T, D))
    resets = np.zeros((B, T), bool)
    resets[:, 0] = True
    h, y = case.full(x, case.random_state((B,)), resets)
    h_zero, y_zero = case.call(x, np.zeros_like(case.random_state((B,))))
    assert_close(y, y_zero, "outputs")
    assert_close(h, h_zero, "final state")


@pytest.mark.parametrize("batch_shape", [(), (2, B)], ids=["no-batch", "two-batch-dims"])
@pytest.mark.parametrize("case", FRONTEND_CASE_PARAMS)
def test_leading_batch_dims(case: Case, batch_shape: tuple[int, ...]) -> None:
    """[*batch, T, D] with no or two batch dims: every row as the reference has it."""
    flat = int(np.prod(batch_shape))
    x = inputs((flat, T, D), seed=4)
    h0 = case.random_state((flat,))
    resets = np.zeros((flat, T), bool)
    resets[-1, 4] = True
    lengths = np.array([T, 5, 2, 0, 6, 1][:flat], np.int32)
    reverse = len(batch_shape) > 0
    shaped = lambda a: np.asarray(a).reshape((*batch_shape, *np.shape(a)[1:]))
    hb, yb = case.full(shaped(x), shaped(h0), shaped(resets), shaped(lengths), reverse=reverse)
    h_ref, y_ref = case.reference(x, h0, resets, lengths, reverse)
    chex.assert_shape(yb, (*batch_shape, T, case.d_out))
    chex.assert_shape(hb, (*batch_shape, case.state_size))
    assert_close(yb, shaped(y_ref), "outputs")
    assert_close(hb, shaped(h_ref), "final state")
    # The step too.
    hs, ys = case.step(shaped(h0), shaped(x[:, 0]))
    step = case.reference_step()
    h1 = [step(case.reference_state(h0[b]), x[b, 0].astype(np.float64)) for b in range(flat)]
    assert_close(ys, shaped(np.stack([y for _, y in h1])), "step output")
    assert_close(hs, shaped(np.stack([h for h, _ in h1])), "step state")


@pytest.mark.parametrize("case", FRONTEND_CONFIG_PARAMS)
def test_default_initial_state_is_zero(case: Case) -> None:
    layer = case.frontend_layer()
    blocks = case.state_blocks  # the LSTM's state is a pair (c, h) of [*batch, N] arrays
    for batch_shape in [(), (B,), (2, B)]:
        s = layer.initial_state(batch_shape)
        chex.assert_shape(jax.tree.leaves(s), (*batch_shape, N))
        chex.assert_type(jax.tree.leaves(s), layer.state_dtype)
        np.testing.assert_array_equal(np.asarray(jax.tree.leaves(s)), 0)
        assert len(jax.tree.leaves(s)) == blocks
    chex.assert_shape(jax.tree.leaves(layer.initial_state(B)), (B, N))
    x = inputs((B, T, D), seed=3)
    h, y = case.call(x)  # no initial_state
    chex.assert_type(h, layer.state_dtype)
    chex.assert_type(y, np.float32)
    chex.assert_shape(y, (B, T, case.d_out))
    h_ref, y_ref = case.reference(x, np.zeros((B, case.state_size)))
    assert_close(y, y_ref, "outputs")
    assert_close(h, h_ref, "final state")
