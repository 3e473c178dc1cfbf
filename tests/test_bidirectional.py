"""rz.Bidirectional (concat / sum, padding, resets, the state pair) and the registry
(rz.LAYERS, rz.make_layer)."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import assert_close, inputs

import recurrent_zoo as rz

B, T, D, N = 3, 6, 3, 4
LENGTHS = np.array([T, 4, 1], np.int32)
RESETS = np.zeros((B, T), bool)
RESETS[0, 2] = True


@functools.cache
def _setup(merge: str):
    fwd, bwd = rz.LRU(hidden_size=N), rz.GRU(hidden_size=D if merge == "sum" else N)
    bi = rz.Bidirectional(fwd, bwd, merge=merge)
    v = bi.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    call = jax.jit(
        lambda v, x, s, r, n: bi.apply(
            v, x, initial_state=s, resets=r, lengths=n, return_state=True
        )
    )
    return fwd, bwd, bi, v, call


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_is_forward_and_reversed_backward(merge: str) -> None:
    fwd, bwd, _, v, call = _setup(merge)
    assert set(v["params"]) == {"forward", "backward"}
    x = inputs((B, T, D))
    s_f = np.asarray(jax.random.normal(jax.random.key(1), (B, N)), np.complex64)
    s_b = np.asarray(jax.random.normal(jax.random.key(2), bwd.initial_state(B).shape))
    (h_f, h_b), y = call(v, x, (s_f, s_b), RESETS, LENGTHS)
    kw = dict(resets=RESETS, lengths=LENGTHS, return_state=True)
    hf, yf = fwd.apply({"params": v["params"]["forward"]}, x, initial_state=s_f, **kw)
    hb, yb = bwd.apply(
        {"params": v["params"]["backward"]}, x, initial_state=s_b, reverse=True, **kw
    )
    expected = jnp.concatenate([yf, yb], -1) if merge == "concat" else yf + yb
    chex.assert_shape(y, (B, T, D + N if merge == "concat" else D))
    assert_close(y, expected, "merged outputs")
    assert_close(h_f, hf, "forward state")
    assert_close(h_b, hb, "backward state")
    # Padding: zero outputs past the end in both halves.
    for b, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(np.asarray(y[b, n:]), 0)


def test_bidirectional_initial_state_pair_and_defaults() -> None:
    _, bwd, bi, v, _ = _setup("concat")
    s_f, s_b = bi.initial_state((2, B))
    chex.assert_shape([s_f, s_b], (2, B, N))
    chex.assert_type(s_f, jnp.complex64)
    x = inputs((B, T, D))
    (_, h_b), y = bi.apply(v, x, return_state=True)
    (_, g_b), y0 = bi.apply(v, x, initial_state=bi.initial_state(B), return_state=True)
    assert_close(y, y0, "default initial state is zeros")
    assert_close(h_b, g_b, "backward state")
    # The backward half's state after the reversed sequence is the state at t = 0.
    hb, _ = bwd.apply({"params": v["params"]["backward"]}, x[:, ::-1], return_state=True)
    assert_close(h_b, hb, "backward state is the state after the whole reversed sequence")


def test_bidirectional_lstm_carries_its_state_pairs() -> None:
    """The LSTM's (c, h) inside the (forward, backward) pair: both halves as run alone."""
    fwd, bwd = rz.LSTM(hidden_size=N), rz.LSTM(hidden_size=N)
    bi = rz.Bidirectional(fwd, bwd)
    v = bi.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    x = inputs((B, T, D))
    s0 = jax.tree.map(lambda a: a + 0.5, bi.initial_state(B))
    (h_f, h_b), y = bi.apply(v, x, initial_state=s0, lengths=LENGTHS, return_state=True)
    kw = dict(lengths=LENGTHS, return_state=True)
    hf, yf = fwd.apply({"params": v["params"]["forward"]}, x, initial_state=s0[0], **kw)
    hb, yb = bwd.apply(
        {"params": v["params"]["backward"]}, x, initial_state=s0[1], reverse=True, **kw
    )
    assert_close(y, jnp.concatenate([yf, yb], -1), "merged outputs")
    chex.assert_trees_all_close(((h_f, h_b)), (hf, hb), rtol=1e-4, atol=1e-4)
    assert len(h_f) == len(h_b) == 2  # (c, h) each


def test_bidirectional_with_one_module_twice_has_two_parameter_sets() -> None:
    layer = rz.GRU(hidden_size=N)
    bi = rz.Bidirectional(layer, layer)
    v = bi.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    assert set(v["params"]) == {"forward", "backward"}
    assert not np.allclose(
        v["params"]["forward"]["input_kernel"], v["params"]["backward"]["input_kernel"]
    )


def test_bidirectional_bad_initial_state() -> None:
    _, _, bi, v, _ = _setup("concat")
    with pytest.raises(ValueError, match=r"initial_state must be a pair .*got"):
        bi.apply(v, inputs((B, T, D)), initial_state=jnp.zeros((B, N)))


def test_bidirectional_sum_needs_equal_output_sizes() -> None:
    bi = rz.Bidirectional(rz.GRU(hidden_size=N), rz.GRU(hidden_size=N + 1), merge="sum")
    with pytest.raises(ValueError, match=r"merge='sum' needs equal output shapes.*4.*5"):
        bi.init(jax.random.key(0), jnp.zeros((1, 2, D)))


def test_registry() -> None:
    expected = {
        "rnn": rz.VanillaRNN,
        "ln_rnn": rz.LayerNormRNN,
        "crnn": rz.ComplexDiagonalRNN,
        "mh_linear": rz.MultiHeadLinearRNN,
        "lru": rz.LRU,
        "gru": rz.GRU,
        "lstm": rz.LSTM,
    }
    assert rz.LAYERS == expected
    for name, cls in rz.LAYERS.items():
        assert getattr(rz, cls.__name__) is cls
        assert issubclass(cls, rz.RecurrentLayer)
        layer = rz.make_layer(name, hidden_size=7)
        assert type(layer) is cls and layer.hidden_size == 7
    lru = rz.make_layer("lru", hidden_size=5, r_min=0.5, parametrization="polar")
    assert (lru.r_min, lru.parametrization) == (0.5, "polar")
