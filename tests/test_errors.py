"""Every bad input of docs/api.md raises an error naming the argument, what was seen and what was
expected — at trace time. One test per case, on one diagonal and one cell layer."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz

B, T, D, N = 2, 5, 3, 4
LAYER_NAMES = ["lru", "gru"]


@functools.cache
def _bound(name: str):
    layer = rz.make_layer(name, hidden_size=N)
    x = jnp.ones((1, 1, D))
    return layer, layer.init(jax.random.key(0), x)


@pytest.fixture(params=LAYER_NAMES)
def layer_vars(request):
    return _bound(request.param)


def _call(layer_vars, x, **kw):
    layer, v = layer_vars
    return layer.apply(v, x, **kw)


def _step(layer_vars, state, x_t):
    layer, v = layer_vars
    return layer.apply(v, state, x_t, method="step")


X = np.ones((B, T, D), np.float32)


def _raises(exc, *fragments: str):
    """pytest.raises matching every fragment (argument name, seen, expected) in order."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


# -- x ------------------------------------------------------------------------------------------
def test_x_of_rank_one(layer_vars) -> None:
    with _raises(ValueError, "x", "[*batch, T, features]", "(5,)"):
        _call(layer_vars, np.ones(T, np.float32))


def test_x_without_time_steps(layer_vars) -> None:
    with _raises(ValueError, "x", "at least one time step", "(2, 0, 3)"):
        _call(layer_vars, np.ones((B, 0, D), np.float32))


def test_x_with_wrong_feature_size_after_init(layer_vars) -> None:
    with _raises(ValueError, "x has 4 features", "expected 3"):
        _call(layer_vars, np.ones((B, T, D + 1), np.float32))


def test_x_of_integer_dtype(layer_vars) -> None:
    with _raises(TypeError, "x", "floating", "int32"):
        _call(layer_vars, np.ones((B, T, D), np.int32))


def test_x_not_an_array(layer_vars) -> None:
    with _raises(TypeError, "x", "array", "list"):
        _call(layer_vars, [[[1.0] * D] * T])


# -- lengths ------------------------------------------------------------------------------------
def test_lengths_above_T(layer_vars) -> None:
    with _raises(ValueError, "lengths", "[0, 5]", "[1, 6]"):
        _call(layer_vars, X, lengths=np.array([6, 1]))


def test_lengths_below_zero(layer_vars) -> None:
    with _raises(ValueError, "lengths", "[0, 5]", "[-1, 3]"):
        _call(layer_vars, X, lengths=jnp.array([-1, 3]))


def test_lengths_of_wrong_shape(layer_vars) -> None:
    with _raises(ValueError, "lengths", "(2,)", "(2, 1)"):
        _call(layer_vars, X, lengths=np.ones((B, 1), np.int32))


def test_lengths_of_float_dtype(layer_vars) -> None:
    with _raises(TypeError, "lengths", "integer", "float32"):
        _call(layer_vars, X, lengths=np.array([1.0, 2.0], np.float32))


def test_lengths_of_bool_dtype(layer_vars) -> None:
    with _raises(TypeError, "lengths", "integer", "bool"):
        _call(layer_vars, X, lengths=np.array([True, False]))


def test_traced_out_of_range_lengths_give_nan_not_a_wrong_answer(layer_vars) -> None:
    """Under jit the values cannot be checked at trace time (documented in _checks.lengths)."""
    layer, v = layer_vars
    x = np.random.default_rng(0).normal(size=(3, T, D)).astype(np.float32)
    lengths = np.array([T + 1, 2, -1], np.int32)
    for reverse in (False, True):
        f = jax.jit(
            lambda v, x, n, reverse=reverse: layer.apply(
                v, x, lengths=n, reverse=reverse, return_state=True
            )
        )
        h, y = f(v, x, lengths)
        h_ok, y_ok = layer.apply(
            v, x[1:2], lengths=lengths[1:2], reverse=reverse, return_state=True
        )
        assert np.isnan(np.asarray(y)[[0, 2]]).all() and np.isnan(np.asarray(h)[[0, 2]]).all()
        np.testing.assert_allclose(np.asarray(y[1]), np.asarray(y_ok[0]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(h[1]), np.asarray(h_ok[0]), rtol=1e-6, atol=1e-6)


# -- resets -------------------------------------------------------------------------------------
def test_resets_of_wrong_shape(layer_vars) -> None:
    with _raises(ValueError, "resets", "(2, 5)", "(2, 4)"):
        _call(layer_vars, X, resets=np.zeros((B, T - 1), bool))


def test_resets_without_time_axis(layer_vars) -> None:
    with _raises(ValueError, "resets", "(2, 5)", "(2,)"):
        _call(layer_vars, X, resets=np.zeros(B, bool))


def test_resets_of_float_dtype(layer_vars) -> None:
    with _raises(TypeError, "resets", "bool", "float32"):
        _call(layer_vars, X, resets=np.zeros((B, T), np.float32))


# -- state: __call__ ----------------------------------------------------------------------------
def test_initial_state_of_wrong_hidden_size(layer_vars) -> None:
    with _raises(ValueError, "initial_state", "(2, 4)", "(2, 5)"):
        _call(layer_vars, X, initial_state=np.zeros((B, N + 1), np.float32))


def test_initial_state_of_wrong_batch(layer_vars) -> None:
    with _raises(ValueError, "initial_state", "(2, 4)", "(3, 4)"):
        _call(layer_vars, X, initial_state=np.zeros((B + 1, N), np.float32))


def test_initial_state_of_wrong_structure(layer_vars) -> None:
    h = np.zeros((B, N), np.float32)
    with _raises(
        ValueError, "initial_state", "structure", "[2, 4]", "(float32[2, 4], float32[2, 4])"
    ):
        _call(layer_vars, X, initial_state=(h, h))


def test_initial_state_of_integer_dtype(layer_vars) -> None:
    with _raises(TypeError, "initial_state", "dtype", "int32"):
        _call(layer_vars, X, initial_state=np.zeros((B, N), np.int32))


# -- state and x_t: step ------------------------------------------------------------------------
def test_step_state_of_wrong_shape(layer_vars) -> None:
    with _raises(ValueError, "state", "(2, 4)", "(2, 5)"):
        _step(layer_vars, np.zeros((B, N + 1), np.float32), X[:, 0])


def test_step_state_of_wrong_structure(layer_vars) -> None:
    with _raises(ValueError, "state", "structure", "[2, 4]", "NoneType"):
        _step(layer_vars, None, X[:, 0])


def test_step_x_with_wrong_feature_size(layer_vars) -> None:
    with _raises(ValueError, "x_t has 4 features", "expected 3"):
        _step(layer_vars, np.zeros((B, N), np.float32), np.ones((B, D + 1), np.float32))


def test_step_x_of_integer_dtype(layer_vars) -> None:
    with _raises(TypeError, "x_t", "floating", "int32"):
        _step(layer_vars, np.zeros((B, N), np.float32), np.ones((B, D), np.int32))


def test_step_x_scalar(layer_vars) -> None:
    with _raises(ValueError, "x_t", "[*batch, features]", "scalar"):
        _step(layer_vars, np.zeros(N, np.float32), np.float32(1.0))


# -- constructor options ------------------------------------------------------------------------
def test_unknown_activation() -> None:
    with _raises(ValueError, "activation", "'tanh', 'relu', 'linear'", "'sigmoid'"):
        rz.VanillaRNN(hidden_size=N, activation="sigmoid")


def test_unknown_recurrent_init() -> None:
    with _raises(ValueError, "recurrent_init", "'orthogonal'", "'unitary'"):
        rz.VanillaRNN(hidden_size=N, recurrent_init="unitary")


@pytest.mark.parametrize("name", ["crnn", "lru", "mh_linear"])
def test_unknown_scan(name: str) -> None:
    with _raises(ValueError, "scan", "'sequential'", "'fft'"):
        rz.make_layer(name, hidden_size=N, scan="fft")


@pytest.mark.parametrize("name", ["crnn", "lru"])
def test_unknown_parametrization(name: str) -> None:
    with _raises(ValueError, "parametrization", "'exp'", "'cayley'"):
        rz.make_layer(name, hidden_size=N, parametrization="cayley")


def test_num_heads_not_dividing_hidden_size() -> None:
    with _raises(ValueError, "num_heads must divide hidden_size", "num_heads=3", "hidden_size=4"):
        rz.MultiHeadLinearRNN(hidden_size=N, num_heads=3)


@pytest.mark.parametrize("bad", [0, True])
def test_num_heads_not_positive(bad) -> None:
    with _raises(ValueError, "num_heads", "positive", repr(bad)):
        rz.MultiHeadLinearRNN(hidden_size=N, num_heads=bad)


@pytest.mark.parametrize("bad", [0, -2, 4.0, True])
def test_hidden_size_not_a_positive_int(bad) -> None:
    with _raises(ValueError, "hidden_size", "positive int", repr(bad)):
        rz.GRU(hidden_size=bad)


def test_ring_radii_out_of_order() -> None:
    with _raises(ValueError, "r_min and r_max", "r_min=0.9", "r_max=0.5"):
        rz.LRU(hidden_size=N, r_min=0.9, r_max=0.5)


def test_phases_out_of_order() -> None:
    with _raises(ValueError, "min_phase", "max_phase", "max_phase=-1.0"):
        rz.LRU(hidden_size=N, max_phase=-1.0)


@pytest.mark.parametrize("bad", [0, -1, True])
def test_out_features_not_positive(bad: int) -> None:
    with _raises(ValueError, "out_features", "positive int or None", repr(bad)):
        rz.LRU(hidden_size=N, out_features=bad)


@pytest.mark.parametrize("bad", [-1.0, (5.0, 2.0)])
def test_bad_chrono_init(bad) -> None:
    with _raises(ValueError, "chrono_init", "T > 0", repr(bad)):
        rz.GRU(hidden_size=N, chrono_init=bad)


@pytest.mark.parametrize("name", ["rnn", "ln_rnn", "gru"])
@pytest.mark.parametrize("bad", [0, 2.0, True])
def test_batch_groups_not_a_positive_int(name: str, bad) -> None:
    with _raises(ValueError, "batch_groups", "positive int or None", repr(bad)):
        rz.make_layer(name, hidden_size=N, batch_groups=bad)


def test_make_layer_with_unknown_name() -> None:
    with _raises(ValueError, "layer name", "'lru'", "'transformer'"):
        rz.make_layer("transformer", hidden_size=N)


def test_bidirectional_unknown_merge() -> None:
    with _raises(ValueError, "merge", "'concat', 'sum'", "'mul'"):
        rz.Bidirectional(rz.GRU(N), rz.GRU(N), merge="mul")
