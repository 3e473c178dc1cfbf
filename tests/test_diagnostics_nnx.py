"""rz.diagnostics on Flax NNX models: the numbers of the linen twin (the same linen parts through
``nnx.bridge.ToNNX`` holding the same variables), paths named as in the pure dict."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from nnx_models import TinyModel, linen_stack, nnx_stack

import recurrent_zoo as rz
from recurrent_zoo.diagnostics import (
    activity,
    adam_effective_learning_rates,
    gradient_by_group,
    group_summary,
    name_groups,
)

X = jax.random.normal(jax.random.key(1), (2, 6, 3))


@pytest.fixture(scope="module")
def twins():
    """(linen model, its variables, the NNX twin)."""
    linen = linen_stack()
    variables = linen.init(jax.random.key(0), X)
    return linen, variables, nnx_stack(linen, variables)


def _values(found: dict) -> list[float]:
    return [float(v) for v in found.values()]


def test_activity_of_the_nnx_twin(twins):
    linen, variables, model = twins
    want = activity(linen, variables, X)
    got = activity(model, None, X)
    assert list(want) == ["layers_0", "layers_1", "layers_2"]
    assert list(got) == ["layers/0", "layers/1", "layers/2"]
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-6)
    # A class selects the ToNNX wrappers of linen modules of that class too.
    got = activity(model, None, X, modules=rz.RecurrentLayer)
    assert list(got) == ["layers/1"]
    np.testing.assert_allclose(
        _values(got), _values(activity(linen, variables, X, modules=rz.RecurrentLayer)), rtol=1e-6
    )
    with pytest.raises(TypeError, match="holds its own variables"):
        activity(model, variables, X)


def test_activity_of_nnx_modules_averages_calls_and_leaves_the_model_alone():
    class Dense(nnx.Linear):  # no __call__ of its own: the wrapper must go again after
        pass

    class Twice(nnx.Module):
        def __init__(self):
            init = nnx.initializers.ones
            self.dense = Dense(1, 1, use_bias=False, kernel_init=init, rngs=nnx.Rngs(0))
            self.other = nnx.Linear(1, 1, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.other(self.dense(self.dense(x)))

    linear_call = nnx.Linear.__call__
    act = activity(Twice(), None, jnp.full((1, 1), 3.0), modules=lambda m: m.in_features == 1)
    assert list(act) == ["dense", "other"]
    assert float(act["dense"]) == pytest.approx((9 + 9) / 2)  # both calls output 3
    assert nnx.Linear.__call__ is linear_call and "__call__" not in vars(Dense)
    # A model in training mode: batch norm runs on the batch, its running averages stay.
    model = TinyModel(rngs=nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    act = activity(model, None, X, modules=(nnx.BatchNorm, nnx.LayerNorm))
    assert list(act) == ["norm", "out_norm"]
    np.testing.assert_allclose(float(act["norm"]), 1.0, rtol=1e-3)  # normalised, γ = 1, β = 0
    after = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, after, before)


def _losses(twins):
    linen, variables, model = twins
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    linen_loss = lambda p: jnp.mean(linen.apply({"params": p}, X) ** 2)
    # The RNG counters in ``rest`` advance in the call: copies made inside the trace.
    nnx_loss = lambda p: jnp.mean(nnx.merge(graphdef, p, jax.tree.map(jnp.copy, rest))(X) ** 2)
    return linen_loss, variables["params"], nnx_loss, params


def test_gradient_by_group_of_the_nnx_twin(twins):
    linen_loss, linen_params, nnx_loss, params = _losses(twins)
    for grouping, nnx_grouping in [
        (name_groups(lam=("nu_log", "theta_log")),) * 2,
        (rz.optim.param_labels(linen_params), rz.optim.param_labels(params)),
    ]:
        want = gradient_by_group(linen_loss, linen_params, grouping)
        got = gradient_by_group(nnx_loss, params, nnx_grouping)
        assert set(got) == set(want) and len(want) == 2
        for g in want:
            np.testing.assert_allclose(float(got[g]), float(want[g]), rtol=1e-5)


def test_adam_effective_learning_rates_of_the_nnx_twin(twins):
    linen_loss, linen_params, nnx_loss, params = _losses(twins)
    tx = optax.adam(1e-2)
    grads = jax.grad(linen_loss)(linen_params)
    state = tx.init(linen_params)
    for _ in range(2):
        _, state = tx.update(grads, state, linen_params)
    want = group_summary(adam_effective_learning_rates(state, 1e-2))
    assert {"nu_log", "kernel", "B_re"} <= set(want)
    # optax on the nnx.State of the parameters, and nnx.Optimizer on a copy of the model.
    nnx_grads = jax.grad(nnx_loss)(params)
    nnx_state = tx.init(params)
    for _ in range(2):
        _, nnx_state = tx.update(nnx_grads, nnx_state, params)
    model = nnx.clone(twins[2])
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for _ in range(2):
        optimizer.update(model, nnx_grads)
    labels = rz.optim.param_labels(params)
    for opt_state in (nnx_state, optimizer, optimizer.opt_state):
        eff = adam_effective_learning_rates(opt_state, 1e-2)
        got = group_summary(eff)
        assert set(got) == set(want)
        for g in want:
            for stat in ("mean", "median", "min", "max"):
                np.testing.assert_allclose(got[g][stat], want[g][stat], rtol=1e-5)
        by_label = group_summary(eff, labels)  # labels of the params name OptVariables too
        assert set(by_label) == {"recurrent", "default"}
