"""rz.optim: recurrent parameter labels, weight decay and learning-rate factor, schedule, clipping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.optim import DEFAULT, RECURRENT

EXPECTED = {
    "rnn": {"recurrent_kernel"},
    "ln_rnn": {"recurrent_kernel"},
    "gru": {"recurrent_kernel"},
    "lstm": {"recurrent_kernel"},
    "crnn": {"lambda_re", "lambda_im"},
    "lru": {"nu_log", "theta_log", "gamma_log"},
    "mh_linear": {"A"},
}


def _recurrent_names(params):
    labels = rz.optim.param_labels(params)
    flat = jax.tree_util.tree_flatten_with_path(labels)[0]
    return {path[-1].key for path, label in flat if label == RECURRENT}


@pytest.fixture(scope="module")
def x():
    return jnp.ones((1, 2, 4))


def test_every_registered_layer_has_its_labels(x):
    assert set(EXPECTED) == set(rz.LAYERS)
    for name, want in EXPECTED.items():
        layer = rz.make_layer(name, hidden_size=4)
        params = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]
        assert _recurrent_names(params) == want, name


@pytest.mark.parametrize(
    "par, want",
    [
        ("polar", {"nu", "theta", "gamma_log"}),
        ("optimal", {"omega_nu", "omega_theta", "gamma_log"}),
    ],
)
def test_labels_follow_the_parametrization(x, par, want):
    layer = rz.ComplexDiagonalRNN(hidden_size=4, parametrization=par, normalize=True)
    assert _recurrent_names(jax.eval_shape(layer.init, jax.random.key(0), x)["params"]) == want


@pytest.fixture(scope="module")
def model_params(x):
    model = rz.SequenceModel("lru", num_layers=1, d_model=4, out_features=1, mlp=None)
    return model.init(jax.random.key(1), x)["params"]


def test_labels_inside_a_model(model_params):
    labels = rz.optim.param_labels(model_params)
    assert labels["blocks_0"]["layer"]["nu_log"] == RECURRENT
    assert labels["blocks_0"]["layer"]["B_re"] == DEFAULT
    assert labels["encoder"]["kernel"] == DEFAULT


def test_weight_decay_skips_recurrent_parameters(model_params):
    params = model_params
    tx = rz.optim.make_optimizer(1.0, weight_decay=0.1)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)  # Adam of a zero gradient is 0
    labels = rz.optim.param_labels(params)
    for u, p, label in zip(*(jax.tree.leaves(t) for t in (updates, params, labels))):
        want = 0.0 * p if label == RECURRENT else -0.1 * p
        np.testing.assert_allclose(u, want, rtol=1e-6, atol=1e-12)


def test_recurrent_lr_factor_applies(model_params):
    params = model_params
    tx = rz.optim.make_optimizer(0.01, recurrent_lr_factor=0.25)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(ones, tx.init(params), params)  # Adam's first step: −η·sign(g)
    labels = rz.optim.param_labels(params)
    for u, label in zip(jax.tree.leaves(updates), jax.tree.leaves(labels)):
        want = -0.0025 if label == RECURRENT else -0.01
        np.testing.assert_allclose(u, want, rtol=1e-5)


def test_schedule_warms_up_then_decays():
    s = rz.optim.learning_rate_schedule(
        1.0, total_steps=110, warmup_steps=10, end_learning_rate=0.0
    )
    np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)], [0, 0.5, 1, 0.5, 0], atol=1e-6)
    no_warmup = rz.optim.learning_rate_schedule(2e-3, total_steps=100)
    np.testing.assert_allclose([no_warmup(0), no_warmup(100)], [2e-3, 1e-7], rtol=1e-5)


def test_global_norm_clipping():
    params = {"w": jnp.zeros(4), "recurrent_kernel": jnp.zeros(3)}
    grads = {"w": jnp.full(4, 3.0), "recurrent_kernel": jnp.full(3, 4.0)}  # norm √84
    tx = rz.optim.make_optimizer(1.0, optimizer="sgd", clip_norm=1.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    norm = jnp.sqrt(sum(jnp.sum(u**2) for u in jax.tree.leaves(updates)))
    np.testing.assert_allclose(norm, 1.0, rtol=1e-6)
    np.testing.assert_allclose(updates["w"], -3.0 / np.sqrt(84), rtol=1e-6)


def test_bad_optimizer_options():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        rz.optim.make_optimizer(optimizer="rmsprop")
    with pytest.raises(ValueError, match="total_steps must exceed warmup_steps"):
        rz.optim.make_optimizer(total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="recurrent_lr_factor must be > 0"):
        rz.optim.make_optimizer(recurrent_lr_factor=0.0)


# -- Flax NNX ------------------------------------------------------------------------------
def test_nnx_params_get_the_linen_labels(x):
    from flax import nnx
    from nnx_models import bridged

    for name in rz.LAYERS:
        layer = rz.make_layer(name, hidden_size=4)
        params = nnx.state(bridged(layer, x, nnx.Rngs(0)), nnx.Param)
        want = rz.optim.param_labels(jax.eval_shape(layer.init, jax.random.key(0), x)["params"])
        assert nnx.to_pure_dict(rz.optim.param_labels(params)) == want, name
        assert rz.optim.param_labels(nnx.to_pure_dict(params)) == want, name


def test_make_optimizer_on_nnx_params_gives_the_linen_updates(x):
    import optax
    from flax import nnx
    from nnx_models import bridged

    module = bridged(rz.LRU(hidden_size=4), x, nnx.Rngs(0))
    params = nnx.state(module, nnx.Param)
    pure = nnx.to_pure_dict(params)
    grads = jax.tree.map(lambda p: jnp.cos(p) + 0.5, params)
    tx = rz.optim.make_optimizer(0.01, recurrent_lr_factor=0.25, weight_decay=0.1)
    want, _ = tx.update(nnx.to_pure_dict(grads), tx.init(pure), pure)
    assert want["nu_log"].ndim == 1  # the recurrent group is not empty
    updates, _ = tx.update(grads, tx.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(updates), want)
    optimizer = nnx.Optimizer(module, tx, wrt=nnx.Param)
    optimizer.update(module, grads)
    jax.tree.map(
        np.testing.assert_allclose,
        nnx.to_pure_dict(nnx.state(module, nnx.Param)),
        optax.apply_updates(pure, want),
    )
