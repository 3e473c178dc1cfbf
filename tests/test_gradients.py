"""Gradients agree with finite differences (float64) for every layer configuration, with respect
to inputs and parameters, through resets and padding.

float64 needs jax's x64 mode; ``jax.enable_x64`` is a context manager, so it stays inside each
test and never leaks into the rest of the suite (checked at the end of the test).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import CONFIG_PARAMS, Case, D, inputs
from jax.test_util import check_grads

import recurrent_zoo as rz

B, T = 2, 5


@pytest.mark.parametrize("case", CONFIG_PARAMS)
def test_gradients_match_finite_differences(case: Case) -> None:
    resets = np.zeros((B, T), bool)
    resets[0, 2] = True
    lengths = np.array([T, 3], np.int32)
    with jax.enable_x64(True):
        layer = case.layer(dtype=jnp.float64, param_dtype=jnp.float64)
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), case.variables["params"])
        x = inputs((B, T, D)).astype(np.float64)
        h0 = case.reference_state(case.random_state((B,)))

        @jax.jit
        def f(params, x):
            h, y = layer.apply(
                {"params": params},
                x,
                initial_state=case.to_layer_state(h0),
                resets=resets,
                lengths=lengths,
                return_state=True,
            )
            h = case.from_layer_state(h)
            assert y.dtype == jnp.float64 and h.dtype == h0.dtype
            return y, jnp.real(h), jnp.imag(h)

        check_grads(f, (params, x), order=1, modes=["rev"])
    assert jnp.zeros(1).dtype == jnp.float32  # x64 did not leak


@pytest.mark.parametrize("name", ["crnn", "lru", "gru", "rnn", "ln_rnn", "lstm"])
def test_forward_mode_equals_reverse_mode_through_the_custom_jvps(name: str) -> None:
    """jax.jvp/jacfwd work through the custom JVPs of the complex scan (crnn, lru) and of the
    matmul-cell scan (gru, rnn, ln_rnn, lstm) and agree with reverse mode."""
    kwargs = {"scan": "sequential"} if name in ("crnn", "lru") else {}
    layer = rz.make_layer(name, hidden_size=3, **kwargs)
    x = jax.random.normal(jax.random.key(0), (2, 6, 2))
    resets = jnp.zeros((2, 6), bool).at[0, 3].set(True)
    lengths = jnp.array([6, 4])
    v = layer.init(jax.random.key(1), x)
    loss = lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x, resets=resets, lengths=lengths)))
    fwd = jax.jacfwd(loss, argnums=(0, 1))(v, x)
    rev = jax.grad(loss, argnums=(0, 1))(v, x)
    chex.assert_trees_all_close(fwd, rev, rtol=1e-4, atol=1e-5)
