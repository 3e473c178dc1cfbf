"""SequenceModel: per-step decoding, pooling, embeddings and padding-aware batch norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz

B, T, D_IN, D_MODEL, OUT = 2, 5, 3, 6, 4


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(0), (B, T, D_IN))


def _step_through(model, v, xs):
    """Steps through xs one jitted ``step`` at a time (one compile, T calls)."""
    step = jax.jit(lambda v, s, x_t: model.apply(v, s, x_t, method="step"))
    states = model.initial_state(xs.shape[0])
    ys = []
    for t in range(xs.shape[1]):
        states, y_t = step(v, states, xs[:, t])
        ys.append(y_t)
    return states, jnp.stack(ys, 1)


@pytest.mark.parametrize("name", ["lru", "gru", "mh_linear", "lstm"])
def test_step_through_stack_equals_sequence_call(x, name):
    kw = {"num_heads": 2} if name == "mh_linear" else {}
    model = rz.SequenceModel(
        name, num_layers=2, d_model=D_MODEL, out_features=OUT, hidden_size=4, layer_kwargs=kw
    )
    v = model.init(jax.random.key(1), x)
    s_seq, y_seq = model.apply(v, x, return_state=True)
    s_step, y_step = _step_through(model, v, x)
    assert y_seq.shape == (B, T, OUT) and len(s_seq) == 2
    np.testing.assert_allclose(y_step, y_seq, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s_step), jax.tree.leaves(s_seq)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_models_from_a_name_a_class_or_a_factory(x):
    by_name = rz.SequenceModel("lru", num_layers=1, d_model=8, out_features=2)
    by_class = rz.SequenceModel(rz.LRU, num_layers=1, d_model=8, out_features=2)
    by_factory = rz.SequenceModel(
        lambda: rz.LRU(hidden_size=8), num_layers=1, d_model=8, out_features=2
    )
    vs = [m.init(jax.random.key(2), x) for m in (by_name, by_class, by_factory)]
    assert sorted(vs[0]["params"]) == ["blocks_0", "decoder", "encoder"]
    ys = [m.apply(v, x) for m, v in zip((by_name, by_class, by_factory), vs)]
    np.testing.assert_allclose(ys[0], ys[1], rtol=1e-6)
    np.testing.assert_allclose(ys[0], ys[2], rtol=1e-6)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_initial_state_carries_over_chunks(x, name):
    model = rz.SequenceModel(name, num_layers=2, d_model=D_MODEL, out_features=OUT)
    v = model.init(jax.random.key(3), x)
    y = model.apply(v, x)
    s, y1 = model.apply(v, x[:, :2], return_state=True)
    y2 = model.apply(v, x[:, 2:], initial_state=s)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_respects_lengths(x, pooling):
    lengths = jnp.array([5, 2])
    kw = dict(num_layers=1, d_model=D_MODEL, out_features=OUT)
    per_step = rz.SequenceModel("lru", **kw)
    pooled = rz.SequenceModel("lru", pooling=pooling, **kw)
    v = per_step.init(jax.random.key(4), x)
    y = per_step.apply(v, x, lengths=lengths)  # decoder is affine, so it commutes with pooling
    got = pooled.apply(v, x, lengths=lengths)
    if pooling == "mean":
        want = jnp.stack([y[0, :5].mean(0), y[1, :2].mean(0)])
    else:
        want = jnp.stack([y[0, 4], y[1, 1]])
    assert got.shape == (B, OUT)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if pooling == "last":  # the final step of step-decoding is the pooled output
        _, ys = _step_through(pooled, v, x)
        np.testing.assert_allclose(ys[:, -1], pooled.apply(v, x), rtol=1e-5, atol=1e-5)


def test_token_embedding_model_steps_on_ids():
    tokens = jax.random.randint(jax.random.key(5), (B, T), 0, 11)
    model = rz.SequenceModel("lru", num_layers=2, d_model=D_MODEL, out_features=11, vocab_size=11)
    v = model.init(jax.random.key(6), tokens)
    assert v["params"]["encoder"]["embedding"].shape == (11, D_MODEL)
    _, y_step = _step_through(model, v, tokens)
    np.testing.assert_allclose(y_step, model.apply(v, tokens), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="int token ids"):
        model.apply(v, jnp.ones((B, T, 3)))


def test_batch_norm_ignores_padding_and_eval_uses_running_averages(x):
    model = rz.SequenceModel("lru", num_layers=2, d_model=D_MODEL, out_features=OUT, norm="batch")
    v = model.init(jax.random.key(7), x)
    lengths = jnp.array([5, 2])
    pad = jnp.arange(T)[None, :, None] >= lengths[:, None, None]
    x_a = jnp.where(pad, 100.0, x)
    x_b = jnp.where(pad, -7.0, x)
    run = lambda xx: model.apply(v, xx, train=True, lengths=lengths, mutable=["batch_stats"])
    y_a, new_a = run(x_a)
    y_b, new_b = run(x_b)
    np.testing.assert_allclose(y_a, y_b, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_a, new_b)
    # The first norm sees the encoder output: its statistics are over the valid (b, t) only.
    enc = v["params"]["encoder"]
    e = x @ enc["kernel"] + enc["bias"]
    valid = jnp.concatenate([e[0, :5], e[1, :2]])
    stats = new_a["batch_stats"]["blocks_0"]["norm"]
    np.testing.assert_allclose(stats["mean"], 0.1 * valid.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * valid.var(0), rtol=1e-4, atol=1e-6)
    # Eval mode normalises with the running averages, so new statistics change its output.
    v_new = {**v, **new_a}
    assert not np.allclose(model.apply(v, x), model.apply(v_new, x))
    y_train, _ = model.apply(v_new, x, train=True, mutable=["batch_stats"])
    y_train0, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y_train, y_train0, rtol=1e-6)


def test_bad_model_options(x):
    with pytest.raises(ValueError, match="layer must be one of"):
        rz.SequenceModel("transformer", num_layers=2, d_model=4, out_features=1)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        rz.SequenceModel("lru", num_layers=0, d_model=4, out_features=1)
    with pytest.raises(ValueError, match="pooling must be one of"):
        rz.SequenceModel("lru", num_layers=1, d_model=4, out_features=1, pooling="max")
    model = rz.SequenceModel("lru", num_layers=2, d_model=4, out_features=1)
    v = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="list of 2 per-layer states"):
        model.apply(v, model.initial_state(B)[:1], x[:, 0], method="step")
    with pytest.raises(ValueError, match="rank >= 2"):
        model.apply(v, x[0, 0])
