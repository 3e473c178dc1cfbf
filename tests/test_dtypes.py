"""bfloat16 compute for every layer × scan strategy: runs, keeps the state in float32 (complex64),
and stays within BF16_TOL of the float32 layer with the same parameters.

Tolerance (also stated in docs/layers.md): |y_bf16 − y_f32| ≤ BF16_TOL · (1 + |y_f32|) element-wise,
and the same for the state, after T = 8 steps.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import CASE_PARAMS, CONFIG_PARAMS, B, Case, D, T, inputs, jit

BF16_TOL = 0.05


@functools.cache
def _bf16_call(case: Case):
    layer = case.layer(dtype=jnp.bfloat16)

    def f(v, x, h0):
        h, y = layer.apply(v, x, initial_state=case.to_layer_state(h0), return_state=True)
        return case.from_layer_state(h), y

    return jit(f)


def _within(actual, expected, what: str) -> None:
    a = np.asarray(actual).astype(np.complex128)
    e = np.asarray(expected).astype(np.complex128)
    err = np.abs(a - e) / (1 + np.abs(e))
    assert err.max() <= BF16_TOL, f"{what}: bfloat16 off float32 by {err.max():.3g} > {BF16_TOL}"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_bfloat16_compute_float32_state(case: Case) -> None:
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    h, y = _bf16_call(case)(case.variables, x, h0)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_type(h, case.layer().state_dtype)  # float32 or complex64
    assert case.layer(dtype=jnp.bfloat16).state_dtype == case.layer().state_dtype
    h32, y32 = case.call(x, h0)
    _within(y, y32, "outputs")
    _within(h, h32, "final state")


@pytest.mark.parametrize("case", CONFIG_PARAMS)
def test_bfloat16_step_and_bfloat16_params(case: Case) -> None:
    layer = case.layer(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    v = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), case.variables)
    h0 = case.random_state((B,))
    x_t = inputs((B, D))
    h, y = layer.apply(v, case.to_layer_state(h0), x_t, method="step")
    h = case.from_layer_state(h)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_type(h, case.layer().state_dtype)
    h32, y32 = case.step(h0, x_t)
    _within(y, y32, "step output")
    _within(h, h32, "step state")
