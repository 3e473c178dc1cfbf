"""Gradients agree with finite differences (float64) for every layer configuration, with respect
to inputs and parameters, through resets and padding.

float64 needs jax's x64 mode; ``jax.enable_x64`` is a context manager, so it stays inside each
test and never leaks into the rest of the suite (checked at the end of the test).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import CONFIG_PARAMS, Case, D, inputs
from jax.test_util import check_grads

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
                initial_state=h0,
                resets=resets,
                lengths=lengths,
                return_state=True,
            )
            assert y.dtype == jnp.float64 and h.dtype == h0.dtype
            return y, jnp.real(h), jnp.imag(h)

        check_grads(f, (params, x), order=1, modes=["rev"])
    assert jnp.zeros(1).dtype == jnp.float32  # x64 did not leak
