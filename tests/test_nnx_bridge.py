"""The NNX recipe of docs/layers.md: ``nnx.bridge.ToNNX`` around a zoo layer gives the linen
layer's numbers, step by step, and trains with ``nnx.Optimizer``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import recurrent_zoo as rz

X = jax.random.normal(jax.random.key(1), (2, 6, 3))


def bridged(layer):
    model = nnx.bridge.ToNNX(layer, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model, X)  # shapes from a sample input, as linen's init
    return model


def linen_variables(model) -> dict:
    return {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize(
    "layer", [rz.LRU(hidden_size=4), rz.GRU(hidden_size=4)], ids=lambda m: type(m).__name__
)
def test_to_nnx_gives_the_linen_layers_numbers(layer):
    model = bridged(layer)
    variables = linen_variables(model)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, layer.init(jax.random.key(0), X)
    )
    resets = jnp.zeros(X.shape[:2], bool).at[:, 3].set(True)
    kwargs = {"lengths": jnp.array([6, 4]), "resets": resets, "return_state": True}
    state, y = model(X, **kwargs)
    want_state, want_y = layer.apply(variables, X, **kwargs)
    np.testing.assert_array_equal(y, want_y)
    jax.tree.map(np.testing.assert_array_equal, state, want_state)
    # Methods of the linen layer are methods of the wrapper too.
    state0 = layer.initial_state((2,))
    step_state, y_t = model.step(state0, X[:, 0])
    want_step_state, want_y_t = layer.apply(variables, state0, X[:, 0], method="step")
    np.testing.assert_array_equal(y_t, want_y_t)
    jax.tree.map(np.testing.assert_array_equal, step_state, want_step_state)


def test_to_nnx_trains_with_nnx_optimizer():
    layer = rz.LRU(hidden_size=4)
    model = bridged(layer)
    before = linen_variables(model)
    target = jnp.ones_like(X)

    def loss(m):
        return jnp.mean((m(X) - target) ** 2)

    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)

    def linen_loss(params):
        return jnp.mean((layer.apply({"params": params}, X) - target) ** 2)

    want_value, want_grads = jax.value_and_grad(linen_loss)(before["params"])
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    want = jax.tree.map(lambda p, g: p - 0.1 * g, before["params"], want_grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        linen_variables(model)["params"],
        want,
    )
