"""The LSTM against flax's OptimizedLSTMCell, its inits and its field checks. The layer harness
(tests/harness.py) runs it through every other check, and test_layers_reference.py against
PyTorch's equations in PyTorch's weight layout."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import B, D, N, T, assert_close, inputs

import recurrent_zoo as rz


def _init(layer: rz.LSTM) -> dict[str, np.ndarray]:
    v = layer.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    return {k: np.asarray(a) for k, a in v["params"].items()}


def test_lstm_matches_flax_optimized_lstm_cell() -> None:
    """flax's OptimizedLSTMCell (gates i, f, g, o; input kernels without bias, hidden ones with)
    under mapped weights: same outputs, final (c, h), and gradients in x and the kernels."""
    cell = nn.OptimizedLSTMCell(N)
    x = jnp.asarray(inputs((B, T, D)))
    carry0 = (jnp.asarray(inputs((B, N), seed=1)), jnp.asarray(inputs((B, N), seed=2)))
    flax_params = cell.init(jax.random.key(0), carry0, x[:, 0])["params"]
    # Nudge the zero-initialised hidden biases so that they are exercised too.
    flax_params = jax.tree.map(lambda a: a + 0.1, flax_params)
    rnn = nn.RNN(cell, return_carry=True)

    def ours_from(fp):
        return {
            "input_kernel": jnp.concatenate([fp[f"i{g}"]["kernel"] for g in "ifgo"], axis=1),
            "input_bias": jnp.zeros(4 * N),
            "recurrent_kernel": jnp.concatenate([fp[f"h{g}"]["kernel"] for g in "ifgo"], axis=1),
            "recurrent_bias": jnp.concatenate([fp[f"h{g}"]["bias"] for g in "ifgo"]),
        }

    layer = rz.LSTM(hidden_size=N)

    def ours(fp, x):
        return layer.apply({"params": ours_from(fp)}, x, initial_state=carry0, return_state=True)

    def theirs(fp, x):
        return rnn.apply({"params": {"cell": fp}}, x, initial_carry=carry0)

    (c, h), y = ours(flax_params, x)
    (c_f, h_f), y_f = theirs(flax_params, x)
    assert_close(y, y_f, "outputs")
    assert_close(c, c_f, "final cell state")
    assert_close(h, h_f, "final hidden state")

    loss = lambda f: lambda fp, x: jnp.sum(jnp.sin(f(fp, x)[1])) + jnp.sum(f(fp, x)[0][0] ** 2)
    g = jax.grad(loss(ours), argnums=(0, 1))(flax_params, x)
    g_f = jax.grad(loss(theirs), argnums=(0, 1))(flax_params, x)
    jax.tree_util.tree_map_with_path(
        lambda p, a, b: assert_close(a, b, f"gradient {jax.tree_util.keystr(p)}"), g, g_f
    )


def test_forget_bias_and_orthogonal_gates() -> None:
    p = _init(rz.LSTM(hidden_size=N, forget_bias=1.5))
    b_i, b_f, b_g, b_o = np.split(p["input_bias"], 4)
    np.testing.assert_array_equal(b_f, 1.5)
    for b in (b_i, b_g, b_o, p["recurrent_bias"]):
        np.testing.assert_array_equal(b, 0)
    assert p["recurrent_kernel"].shape == (N, 4 * N)
    for w in np.split(p["recurrent_kernel"], 4, axis=1):  # each gate's block is orthogonal
        np.testing.assert_allclose(w @ w.T, np.eye(N), atol=1e-5)
    assert not np.allclose(*np.split(p["recurrent_kernel"], 4, axis=1)[:2])


@pytest.mark.parametrize("chrono, lo, hi", [(8.0, 8.0, 16.0), ((2.0, 50.0), 2.0, 50.0)])
def test_chrono_init(chrono, lo: float, hi: float) -> None:
    """b_f = log U[lo, hi], b_i = −b_f, b_g = b_o = 0 (forget_bias is replaced). With no input and
    no recurrent weights, g = 0 and the cell state decays as f^t: a memory of 1 + e^{b_f} steps."""
    layer = rz.LSTM(hidden_size=N, chrono_init=chrono, forget_bias=7.0)
    p = _init(layer)
    b_i, b_f, b_g, b_o = np.split(p["input_bias"], 4)
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(b_g, 0)
    np.testing.assert_array_equal(b_o, 0)
    assert b_f.min() >= math.log(lo) - 1e-6 and b_f.max() <= math.log(hi) + 1e-6
    assert np.ptp(b_f) > 0.3 * (math.log(hi) - math.log(lo))
    params = dict(p, recurrent_kernel=np.zeros((N, 4 * N), np.float32))
    steps = 10
    c0 = np.ones((1, N), np.float32)
    (c, _), _ = layer.apply(
        {"params": params},
        np.zeros((1, steps, D), np.float32),
        initial_state=(c0, np.zeros_like(c0)),
        return_state=True,
    )
    f = 1 / (1 + np.exp(-b_f))
    np.testing.assert_allclose(np.asarray(c[0]), f**steps, rtol=1e-4)
    memory = 1 / (1 - f)
    assert memory.min() >= 1 + lo - 1e-3 and memory.max() <= 1 + hi + 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"forget_bias": float("nan")}, r"forget_bias must be a finite number, got nan"),
        ({"forget_bias": "1"}, r"forget_bias must be a finite number, got '1'"),
        ({"chrono_init": 0.0}, r"chrono_init must be T > 0 or \(T_min, T_max\).*got 0.0"),
        ({"chrono_init": (8.0, 2.0)}, r"chrono_init must be .*got \(8.0, 2.0\)"),
        ({"chrono_init": (1.0, math.inf)}, r"chrono_init must be .*finite, got \(1.0, inf\)"),
        ({"chrono_init": "long"}, r"chrono_init must be .*got 'long'"),
        ({"recurrent_init": "unitary"}, r"recurrent_init must be one of \[.*got 'unitary'"),
    ],
)
def test_bad_fields_name_the_field_and_value(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rz.LSTM(hidden_size=N, **kwargs)
