"""The functional core under the linen front-end: parameter specs, and the pure calling contract
with parameters held outside linen (as another front-end holds them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import CONFIG_PARAMS, B, Case, D, T, inputs

import recurrent_zoo as rz
from recurrent_zoo.layers.base import apply_sequence, apply_step


@pytest.mark.parametrize("case", CONFIG_PARAMS)
def test_param_specs_declare_the_linen_params(case: Case) -> None:
    """Names, shapes and dtypes; callable on the unbound module."""
    layer = case.layer(param_dtype=jnp.float16)
    specs = layer.param_specs(D)
    params = jax.eval_shape(layer.init, jax.random.key(0), jnp.zeros((1, 1, D)))["params"]
    assert sorted(specs) == sorted(params)
    for name, s in specs.items():
        assert (s.shape, jnp.dtype(s.dtype)) == (params[name].shape, params[name].dtype), name


@pytest.mark.parametrize("case", CONFIG_PARAMS)
def test_pure_contract_equals_the_linen_call(case: Case) -> None:
    layer, p = case.layer(), case.params
    x = inputs((2, B, T, D), seed=3)
    h0 = case.to_layer_state(case.random_state((2, B), seed=4))
    lengths = np.array([[T, 2, 0], [1, T, 5]], np.int32)
    kw = dict(initial_state=h0, lengths=lengths, reverse=True, return_state=True)
    out = apply_sequence(layer, p, x, **kw)
    want = layer.apply({"params": p}, x, **kw)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = apply_step(layer, p, h0, x[..., 0, :])
    want = layer.apply({"params": p}, h0, x[..., 0, :], method="step")
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["lru", "gru"])
def test_pure_contract_names_a_wrong_feature_size(name: str) -> None:
    layer = rz.make_layer(name, hidden_size=4)
    p = layer.init(jax.random.key(0), jnp.zeros((1, 1, D)))["params"]
    with pytest.raises(ValueError, match=f"x has {D + 1} features.*expected {D}"):
        apply_sequence(layer, p, jnp.ones((B, T, D + 1)))
    with pytest.raises(ValueError, match=f"x_t has {D + 1} features.*expected {D}"):
        apply_step(layer, p, layer.initial_state(B), jnp.ones((B, D + 1)))
