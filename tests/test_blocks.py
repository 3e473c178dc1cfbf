"""RecurrentBlock: the paper's block written out by hand, pass-through of the layer contract, step."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz

B, T, D = 3, 6, 4


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(0), (B, T, D))


def _dense(p, h):
    return h @ p["kernel"] + p["bias"]


def test_paper_block_equals_hand_written_composition(x):
    layer = rz.LRU(hidden_size=5)
    block = rz.RecurrentBlock(layer, norm="layer", mlp="glu", dropout=0.0, prenorm=True)
    p = block.init(jax.random.key(1), x)["params"]
    ln = nn.LayerNorm(epsilon=1e-5)
    # [norm] → layer → GELU → [norm] → GLU(out1·σ(out2)) → + residual
    h = ln.apply({"params": p["norm"]}, x)
    h = rz.LRU(hidden_size=5).apply({"params": p["layer"]}, h)
    h = jax.nn.gelu(h)
    h = ln.apply({"params": p["mlp_norm"]}, h)
    want = x + _dense(p["out1"], h) * jax.nn.sigmoid(_dense(p["out2"], h))
    np.testing.assert_allclose(block.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)


def test_postnorm_mlp_block_equals_hand_written_composition(x):
    block = rz.RecurrentBlock(rz.GRU(hidden_size=7), norm="rms", mlp="mlp", prenorm=False)
    p = block.init(jax.random.key(2), x)["params"]
    h = jax.nn.gelu(rz.GRU(hidden_size=7).apply({"params": p["layer"]}, x))
    want = nn.RMSNorm(epsilon=1e-5).apply({"params": p["norm"]}, x + _dense(p["out"], h))
    np.testing.assert_allclose(block.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)


def test_lstm_block_step_equals_sequence_call(x):
    block = rz.RecurrentBlock(rz.LSTM(hidden_size=5), norm="layer", mlp="glu")
    v = block.init(jax.random.key(5), x)
    s_seq, y_seq = block.apply(v, x, return_state=True)
    s = block.initial_state(B)
    for t in range(T):
        s, y_t = block.apply(v, s, x[:, t], method="step")
        np.testing.assert_allclose(y_t, y_seq[:, t], rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), s, s_seq)


def test_block_passes_resets_lengths_initial_state_and_state_through(x):
    identity = lambda a: a
    block = rz.RecurrentBlock(rz.LRU(hidden_size=5), norm=None, mlp=None, activation=identity)
    layer = rz.LRU(hidden_size=5)
    v = block.init(jax.random.key(3), x)
    lv = {"params": v["params"]["layer"]}
    resets = jnp.zeros((B, T), bool).at[:, 3].set(True)
    lengths = jnp.array([6, 4, 0])
    s0 = jax.random.normal(jax.random.key(4), (B, 5)) + 0j
    for reverse in (False, True):
        kw = dict(
            initial_state=s0, resets=resets, lengths=lengths, reverse=reverse, return_state=True
        )
        s, y = block.apply(v, x, **kw)
        ls, ly = layer.apply(lv, x, **kw)
        mask = (jnp.arange(T) < lengths[:, None])[..., None]
        np.testing.assert_allclose(s, ls, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(y, jnp.where(mask, x + ly, 0.0), rtol=1e-6, atol=1e-6)
    assert block.initial_state((2,)).shape == (2, 5)


@pytest.mark.parametrize("norm", ["rms", "batch"])
def test_block_step_equals_sequence(x, norm):
    block = rz.RecurrentBlock(rz.GRU(hidden_size=5), norm=norm, mlp="glu")
    v = block.init(jax.random.key(5), x)
    s_seq, y_seq = block.apply(v, x, return_state=True)
    s = block.initial_state(B)
    ys = []
    for t in range(T):
        s, y_t = block.apply(v, s, x[:, t], method="step")
        ys.append(y_t)
    np.testing.assert_allclose(jnp.stack(ys, 1), y_seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, s_seq, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training(x):
    block = rz.RecurrentBlock(rz.LRU(hidden_size=5), dropout=0.5)
    v = block.init(jax.random.key(6), x)
    y_eval = block.apply(v, x)
    np.testing.assert_array_equal(y_eval, block.apply(v, x))
    y_a = block.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)})
    y_b = block.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(y_a, y_eval) and not np.allclose(y_a, y_b)


def test_bad_block_options(x):
    with pytest.raises(ValueError, match="norm must be one of"):
        rz.RecurrentBlock(rz.LRU(hidden_size=4), norm="group")
    with pytest.raises(ValueError, match="mlp must be one of"):
        rz.RecurrentBlock(rz.LRU(hidden_size=4), mlp="swiglu")
    with pytest.raises(ValueError, match="dropout must lie in"):
        rz.RecurrentBlock(rz.LRU(hidden_size=4), dropout=1.5)
    with pytest.raises(TypeError, match="layer must be a flax Module"):
        rz.RecurrentBlock("lru")
    block = rz.RecurrentBlock(rz.GRU(hidden_size=7), mlp=None)
    with pytest.raises(ValueError, match="output size must equal the input size"):
        block.init(jax.random.key(0), x)
