"""The NNX front-end (``rz.nnx``) against its linen twins: the same outputs, states, steps and
gradients from the same variables, checkpoints both ways, NNX's transforms on every layer, and
the same named errors.

(The layer harness runs the NNX front-end through the contract and reference checks too: see
``FRONTEND_CASE_PARAMS`` in tests/harness.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrent_zoo as rz

B, T, D, N = 2, 5, 3, 4
X = np.random.default_rng(0).normal(size=(B, T, D)).astype(np.float32)
TOKENS = np.random.default_rng(1).integers(0, 7, size=(B, T)).astype(np.int32)
LENGTHS = np.array([T, 3], np.int32)
RESETS = np.zeros((B, T), bool)
RESETS[0, 2] = True
TOL = dict(rtol=1e-5, atol=1e-6)


def close(actual, expected, what: str = "") -> None:
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **TOL),
        actual,
        expected,
    )


# -- twins: every layer, the wrapper, blocks and models -----------------------------------------
LAYER_TWINS = {name: cls(hidden_size=N) for name, cls in rz.LAYERS.items()}
WRAPPER_TWINS = {
    "bidirectional_concat": rz.Bidirectional(rz.GRU(hidden_size=N), rz.LRU(hidden_size=N)),
    "bidirectional_sum": rz.Bidirectional(
        rz.LSTM(hidden_size=D), rz.LRU(hidden_size=N), merge="sum"
    ),
}
BLOCK_TWINS = {
    "block_layer_glu": rz.RecurrentBlock(rz.LRU(hidden_size=N)),
    "block_batch_mlp_postnorm": rz.RecurrentBlock(
        rz.GRU(hidden_size=N), norm="batch", mlp="mlp", prenorm=False
    ),
    "block_rms_bidirectional": rz.RecurrentBlock(
        rz.Bidirectional(rz.LRU(hidden_size=N), rz.LSTM(hidden_size=N)), norm="rms"
    ),
    "block_plain": rz.RecurrentBlock(rz.LRU(hidden_size=N), norm=None, mlp=None),
}
MODEL_TWINS = {
    "model_batch": rz.SequenceModel("lru", num_layers=2, d_model=N, out_features=2, norm="batch"),
    "model_tokens_last": rz.SequenceModel(
        rz.GRU, num_layers=2, d_model=N, out_features=2, vocab_size=7, pooling="last"
    ),
    "model_factory": rz.SequenceModel(
        lambda: rz.LSTM(hidden_size=3), num_layers=1, d_model=N, out_features=2, mlp="mlp"
    ),
}
TWINS = {**LAYER_TWINS, **WRAPPER_TWINS, **BLOCK_TWINS, **MODEL_TWINS}


def sample(name: str) -> np.ndarray:
    return TOKENS if name == "model_tokens_last" else X


def step_input(name: str) -> np.ndarray:
    return sample(name)[:, 0]


def linen_variables(name: str):
    return TWINS[name].init(jax.random.key(0), sample(name))


def call_kwargs(name: str) -> dict:
    kw = {"lengths": LENGTHS, "resets": RESETS, "return_state": True}
    if name in LAYER_TWINS or (name in BLOCK_TWINS and has_step(name)):
        kw["reverse"] = True  # Bidirectional and the models take none
    return kw


def has_step(name: str) -> bool:
    return not name.startswith("bidirectional") and name != "block_rms_bidirectional"


@pytest.mark.parametrize("name", list(TWINS))
def test_from_linen_gives_the_linen_numbers_states_steps_and_gradients(name: str) -> None:
    linen = TWINS[name]
    v = linen_variables(name)
    twin = rz.nnx.from_linen(linen, v)
    twin.eval()  # linen's default (train=False): dropout off, batch norm's running averages
    x, kw = sample(name), call_kwargs(name)
    floats = x.dtype == np.float32

    def loss(out, scale):
        return sum(jnp.sum(jnp.real(a) * scale) for a in jax.tree.leaves(out))

    @jax.jit
    def linen_run(v, x, state0, x_t):
        def f(params, x):
            out = linen.apply({**v, "params": params}, x, **kw)
            return loss(out, 1.0), out

        (_, out), grads = jax.value_and_grad(f, argnums=(0, 1) if floats else 0, has_aux=True)(
            v["params"], x
        )
        step = linen.apply(v, state0, x_t, method="step") if has_step(name) else None
        return out, grads, step

    @nnx.jit
    def nnx_run(m, x, state0, x_t):
        def f(m, x):
            out = m(x, **kw)
            return loss(out, 1.0), out

        argnums = (0, 1) if floats else 0
        (_, out), grads = nnx.value_and_grad(f, argnums=argnums, has_aux=True)(m, x)
        grads = (nnx.to_pure_dict(grads[0]), grads[1]) if floats else nnx.to_pure_dict(grads)
        step = m.step(state0, x_t) if has_step(name) else None
        return out, grads, step

    state0 = twin.initial_state((B,))
    chex.assert_trees_all_equal_shapes_and_dtypes(state0, linen.initial_state((B,)))
    want = linen_run(v, x, state0, step_input(name))
    got = nnx_run(twin, x, state0, step_input(name))
    close(got[0], want[0], "(state, y) of the call")
    close(got[1], want[1], "gradients (params, x)")
    close(got[2], want[2], "(state, y) of a step")


@pytest.mark.parametrize("name", list(TWINS))
def test_to_linen_round_trips_and_fresh_twins_have_the_linen_variables(name: str) -> None:
    linen = TWINS[name]
    v = linen_variables(name)
    twin = rz.nnx.from_linen(linen, v)
    back = rz.nnx.to_linen(twin)
    assert jax.tree.structure(back) == jax.tree.structure(v)
    jax.tree.map(np.testing.assert_array_equal, back, v)
    # The optimiser's groups are the same on the NNX state.
    labels = rz.optim.param_labels(nnx.to_pure_dict(nnx.state(twin, nnx.Param)))
    assert labels == rz.optim.param_labels(v["params"])
    # A twin built directly (eagerly, its own draws) has the linen variables' names and shapes.
    fresh = rz.nnx.twin(linen, None if name == "model_tokens_last" else D, nnx.Rngs(3))
    shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
    assert shapes(rz.nnx.to_linen(fresh)) == shapes(v)


def test_batch_norm_trains_as_linen_and_eval_uses_the_running_averages() -> None:
    """``.train()`` (the default): batch statistics over the valid steps, running averages
    updated as linen's ``train=True, mutable=["batch_stats"]``."""
    linen = MODEL_TWINS["model_batch"]
    v = linen_variables("model_batch")
    twin = rz.nnx.from_linen(linen, v)
    assert not twin.blocks_0.norm.use_running_average  # NNX modules start in train mode
    y, updates = linen.apply(v, X, train=True, lengths=LENGTHS, mutable=["batch_stats"])
    close(twin(X, lengths=LENGTHS), y, "outputs in train mode")
    close(rz.nnx.to_linen(twin)["batch_stats"], updates["batch_stats"], "running averages")
    twin.eval()
    v_new = {**v, **updates}
    close(twin(X, lengths=LENGTHS), linen.apply(v_new, X, lengths=LENGTHS), "eval mode")


def test_dropout_is_on_in_train_mode_and_off_in_eval_mode_and_in_step() -> None:
    model = rz.nnx.SequenceModel(
        "gru", 1, N, 2, in_features=D, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1)
    )
    first, second = model(X), model(X)
    assert not np.allclose(first, second)  # a fresh mask each call
    model.eval()
    y = model(X)
    np.testing.assert_array_equal(model(X), y)
    _, y_t = model.step(model.initial_state(B), X[:, 0])
    close(y_t, y[:, 0], "the first step")
    model.train()
    _, y_t_train = model.step(model.initial_state(B), X[:, 0])
    np.testing.assert_array_equal(y_t_train, y_t)  # step runs in eval mode whatever the mode
    # The linen twin with the same variables gives the eval numbers.
    linen = rz.SequenceModel("gru", 1, N, 2, dropout=0.5)
    close(linen.apply(rz.nnx.to_linen(model), X), y, "linen twin")


def test_sequence_model_steps_through_the_stack_as_the_call() -> None:
    model = rz.nnx.SequenceModel("lstm", 2, N, 2, in_features=D, rngs=nnx.Rngs(0))
    y = model(X)
    states, ys = model.initial_state(B), []
    for t in range(T):
        states, y_t = model.step(states, X[:, t])
        ys.append(y_t)
    close(np.stack(ys, axis=1), y, "stepped outputs")


# -- NNX's transforms on every layer ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(rz.nnx.LAYERS))
def test_nnx_jit_grad_vmap_split_merge_on_every_layer(name: str) -> None:
    layer = rz.nnx.make_layer(name, D, hidden_size=N, rngs=nnx.Rngs(0))
    assert isinstance(layer, rz.nnx.LAYERS[name]) and layer.hidden_size == N
    run = nnx.jit(lambda m, x: m(x, lengths=LENGTHS))
    y = run(layer, X)
    # split / merge: the same module (and the same compiled call).
    graphdef, state = nnx.split(layer)
    assert set(nnx.to_pure_dict(state)) == set(layer.param_names)
    np.testing.assert_array_equal(run(nnx.merge(graphdef, state), X), y)
    # grad: one gradient per parameter, the linen names, none of them all zero.
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(X, lengths=LENGTHS) ** 2)))(layer)
    grads = nnx.to_pure_dict(grads)
    assert set(grads) == set(layer.param_names)
    assert all(np.any(np.asarray(g) != 0) for g in grads.values()), name
    # vmap over a batch of 3 models: each one's output is its own call's.
    models = nnx.vmap(
        lambda rngs: rz.nnx.make_layer(name, D, hidden_size=N, rngs=rngs), in_axes=0, out_axes=0
    )(nnx.Rngs(0).split(3))
    ys = nnx.jit(nnx.vmap(lambda m, x: m(x, lengths=LENGTHS), in_axes=(0, None)))(models, X)
    assert ys.shape[0] == 3
    graphdef, states = nnx.split(models)
    for i in range(3):
        one = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], states))
        close(ys[i], run(one, X), f"model {i} of the vmapped batch")
    assert not np.allclose(ys[0], ys[1])  # distinct draws


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", list(rz.LAYERS))
def test_the_nnx_twin_traces_to_the_linen_program(name: str, dtype) -> None:
    """The front-end costs nothing inside jit: forward and value-and-gradient of the twin trace
    to the very jaxpr of the linen layer's, in each compute dtype (only nnx.jit's Python graph
    handling is extra)."""
    layer = rz.make_layer(name, hidden_size=N, dtype=dtype)
    v = layer.init(jax.random.key(0), X)
    graphdef, state = nnx.split(rz.nnx.from_linen(layer, v))
    linen = lambda v, x: layer.apply(v, x, lengths=LENGTHS)
    twin = lambda s, x: nnx.merge(graphdef, s)(x, lengths=LENGTHS)
    grad = lambda f: jax.value_and_grad(lambda q, x: jnp.sum(f(q, x) ** 2), argnums=(0, 1))
    for f, g in ((linen, twin), (grad(linen), grad(twin))):
        assert str(jax.make_jaxpr(g)(state, X)) == str(jax.make_jaxpr(f)(v, X))


def test_in_features_mismatch_says_what_the_layer_was_built_with() -> None:
    layer = rz.nnx.LRU(3, N, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x has 5 features.*built with in_features=3"):
        layer(np.zeros((B, T, 5), np.float32))
    with pytest.raises(ValueError, match=r"x_t has 2 features.*built with in_features=3"):
        layer.step(layer.initial_state(B), np.zeros((B, 2), np.float32))
    for bad in (0, True, 2.0, None):
        with pytest.raises(ValueError, match="in_features must be a positive int"):
            rz.nnx.GRU(bad, N, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="in_features=3"):
        rz.nnx.RecurrentBlock(layer, d_model=4, rngs=nnx.Rngs(0))


# -- the same named errors ---------------------------------------------------------------------------
def _message(f, *args, **kwargs) -> tuple[type, str]:
    try:
        f(*args, **kwargs)
    except (ValueError, TypeError) as e:
        return type(e), str(e)
    raise AssertionError("no error")


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lru", {"hidden_size": 0}),
        ("gru", {"hidden_size": True}),
        ("lru", {"hidden_size": N, "r_min": 0.9, "r_max": 0.5}),
        ("crnn", {"hidden_size": N, "scan": "nope"}),
        ("rnn", {"hidden_size": N, "activation": "nope"}),
        ("mh_linear", {"hidden_size": N, "num_heads": 3}),
        ("lstm", {"hidden_size": N, "forget_bias": float("nan")}),
    ],
)
def test_bad_settings_raise_the_linen_errors(name: str, kwargs: dict) -> None:
    want = _message(lambda: rz.make_layer(name, **kwargs))
    got = _message(lambda: rz.nnx.make_layer(name, D, rngs=nnx.Rngs(0), **kwargs))
    assert got == want


BAD_CALLS = {
    "rank": lambda m, v: ((X[0, 0],), {}),
    "int_x": lambda m, v: ((X.astype(np.int32),), {}),
    "resets_shape": lambda m, v: ((X,), {"resets": np.zeros((B, T + 1), bool)}),
    "lengths_range": lambda m, v: ((X,), {"lengths": np.array([T + 1, 0])}),
    "state_shape": lambda m, v: ((X,), {"initial_state": np.zeros((B, N + 1), np.complex64)}),
}


@pytest.mark.parametrize("bad", list(BAD_CALLS))
def test_bad_calls_raise_the_linen_errors(bad: str) -> None:
    linen = rz.LRU(hidden_size=N)
    v = linen.init(jax.random.key(0), X)
    twin = rz.nnx.from_linen(linen, v)
    args, kw = BAD_CALLS[bad](twin, v)
    assert _message(lambda: twin(*args, **kw)) == _message(lambda: linen.apply(v, *args, **kw))


def test_bad_steps_and_block_and_model_settings_raise_the_linen_errors() -> None:
    linen = rz.LSTM(hidden_size=N)
    v = linen.init(jax.random.key(0), X)
    twin = rz.nnx.from_linen(linen, v)
    bad_state = (np.zeros((B, N)), np.zeros((B, N + 1)))
    args = (bad_state, X[:, 0])
    assert _message(lambda: twin.step(*args)) == _message(
        lambda: linen.apply(v, *args, method="step")
    )
    layer = rz.nnx.LRU(D, N, rngs=nnx.Rngs(0))
    for kw in ({"norm": "group"}, {"mlp": "moe"}, {"dropout": 1.0}):
        want = _message(rz.RecurrentBlock, rz.LRU(hidden_size=N), **kw)
        assert _message(rz.nnx.RecurrentBlock, layer, **kw, rngs=nnx.Rngs(0)) == want
    for kw in ({"pooling": "max"}, {"num_layers": 0}, {"layer": "nope"}):
        args = {"layer": "lru", "num_layers": 1, "d_model": N, "out_features": 2, **kw}
        want = _message(rz.SequenceModel, **args)
        got = _message(rz.nnx.SequenceModel, **args, in_features=D, rngs=nnx.Rngs(0))
        assert got == want
    lru = rz.LRU(hidden_size=N)
    want = _message(lambda: rz.Bidirectional(lru, lru, merge="max"))
    assert _message(lambda: rz.nnx.Bidirectional(layer, layer, merge="max")) == want
    model = rz.nnx.SequenceModel("lru", 2, N, 2, in_features=D, pooling="mean", rngs=nnx.Rngs(0))
    linen_model = rz.SequenceModel("lru", 2, N, 2, pooling="mean")
    vm = linen_model.init(jax.random.key(0), X)
    for f, g in [
        (lambda: model(X, initial_state=[None]), lambda: linen_model.apply(vm, X, initial_state=[None])),
        (lambda: model.step(model.initial_state(B), X[:, 0]),
         lambda: linen_model.apply(vm, model.initial_state(B), X[:, 0], method="step")),
    ]:  # fmt: skip
        assert _message(f) == _message(g)


def test_sequence_model_needs_exactly_one_of_in_features_and_vocab_size() -> None:
    for kw in ({}, {"in_features": D, "vocab_size": 7}):
        with pytest.raises(ValueError, match="exactly one of in_features"):
            rz.nnx.SequenceModel("lru", 1, N, 2, **kw, rngs=nnx.Rngs(0))


def test_from_linen_names_variables_that_do_not_fit() -> None:
    linen = rz.LRU(hidden_size=N)
    v = linen.init(jax.random.key(0), X)
    params = dict(v["params"])
    params["extra"] = params.pop("D")
    with pytest.raises(ValueError, match=r"missing .*'D'.*unexpected .*'extra'"):
        rz.nnx.from_linen(linen, {"params": params})
    with pytest.raises(TypeError, match="no NNX twin for Dense"):
        rz.nnx.from_linen(nn.Dense(3), {"params": {}})


def test_one_module_as_both_directions_is_cloned() -> None:
    layer = rz.nnx.LRU(D, N, rngs=nnx.Rngs(0))
    bi = rz.nnx.Bidirectional(layer, layer)
    assert bi.backward is not bi.forward
    assert set(rz.nnx.to_linen(bi)["params"]) == {"forward", "backward"}


def test_importing_the_zoo_does_not_import_flax_nnx() -> None:
    code = (
        "import sys, recurrent_zoo as rz; rz.LRU, rz.SequenceModel; "
        "before = 'flax.nnx' in sys.modules; rz.nnx.LRU; print(before, 'flax.nnx' in sys.modules)"
    )
    root = Path(__file__).parents[1]
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert child.stdout.split() == ["False", "True"], child.stderr
