"""Long sequences: the bounded-memory backward (``remat_chunk``) for every layer × scan backend,
and sequence parallelism (``sequence_axis``) for the linear layers, on 4 host devices in a
process of its own (``sharded_checks.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import CASE_PARAMS, B, Case, D, T, assert_close, inputs, long_fn

import recurrent_zoo as rz

RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = True
RESETS[1, [2, 6]] = True
LENGTHS = np.array([T, 5, 7], np.int32)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_remat_chunk_gives_the_same_numbers(case: Case) -> None:
    """Outputs and final state with resets, lengths and h0, forwards and in reverse, and the
    forward call's gradients (w.r.t. parameters and x): T = 8 in chunks of 3, two chunks and a
    remainder (a chunk length dividing T: test_remat_chunks_runs_any_scan_in_pieces)."""
    rng = np.random.default_rng(2)
    x = inputs((B, T, D))
    h0 = case.random_state((B,))
    ct_h = case.random_state((B,), seed=3)
    ct_y = rng.normal(size=(B, T, case.d_out)).astype(np.float32)
    args = (case.params, x, h0, RESETS, LENGTHS, ct_h, ct_y)
    want = jax.tree.map(np.asarray, long_fn(case)(*args))
    got = jax.tree.map(np.asarray, long_fn(case, remat_chunk=3)(*args))
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat_want, jax.tree.leaves(got), strict=True):
        assert_close(g, w, jax.tree_util.keystr(path))


def test_remat_chunks_runs_any_scan_in_pieces() -> None:
    """The scan core's chunking on its own: time-major and batch-major, T a multiple of the
    chunk or not, a chunk as long as T or longer, and None flags passed through."""

    def run(h, xs):
        x, flags = xs
        assert flags is None

        def step(h, x_t):
            h = 0.9 * jnp.tanh(h) + x_t
            return h, 2 * h

        return jax.lax.scan(step, h, x)

    x = jnp.asarray(inputs((10, 2, 3)))
    h0 = jnp.ones((2, 3))
    want = run(h0, (x, None))
    for chunk in (1, 3, 5, 10, 12, None):
        got = rz.scan.remat_chunks(run, h0, (x, None), chunk)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, f"chunk={chunk}")
        grads = [
            jax.grad(lambda x, c=c: jnp.sum(rz.scan.remat_chunks(run, h0, (x, None), c)[1] ** 2))(x)
            for c in (None, chunk)
        ]
        assert_close(grads[1], grads[0], f"gradient, chunk={chunk}")

    def run_bm(h, xs):  # batch-major: [B, T, ...]
        h, y = run(h, (jnp.swapaxes(xs[0], 0, 1), None))
        return h, jnp.swapaxes(y, 0, 1)

    got = rz.scan.remat_chunks(run_bm, h0, (jnp.swapaxes(x, 0, 1), None), 4, time_axis=1)
    assert_close(got[0], want[0])
    assert_close(jnp.swapaxes(got[1], 0, 1), want[1])
    with pytest.raises(ValueError, match="chunk"):
        rz.scan.remat_chunks(run, h0, (x, None), 0)


def test_backward_in_pieces_gives_the_whole_vjp() -> None:
    """The sharded path's backward pass on its own: ∂x and the parameters' cotangents of a
    nonlinear scan, k steps at a time, against jax.vjp of the whole call; the end state's
    cotangent a function of g (the initial state's cotangent from ∂y alone); k dividing T or
    not, or T itself; ∂y shaped like x (its buffer reused) or not; time-major and batch-major."""
    from recurrent_zoo.scan.sequence_parallel import _sliced, backward_in_pieces

    def run(h, x, flags, w, v):
        assert flags is None

        def step(h, x_t):
            h = 0.9 * jnp.tanh(h * w) + x_t
            return h, jnp.concatenate([h * v[: h.shape[-1]], h], axis=-1)[..., : v.shape[-1]]

        return jax.lax.scan(step, h, x)

    T, B, N = 10, 2, 3
    x = jnp.asarray(inputs((T, B, N)))
    h0 = jnp.asarray(inputs((B, N), seed=1))
    w = jnp.asarray(inputs((N,), seed=2))
    end_cotangent = lambda g: 2.0 * g + 1.0
    for d_out in (N, 2 * N):  # ∂y like x (in place), or not
        v = jnp.asarray(inputs((d_out,), seed=3))
        dy = jnp.asarray(inputs((T, B, d_out), seed=4))
        _, pull = jax.vjp(lambda h, x, w, v: run(h, x, None, w, v), h0, x, w, v)
        g = pull((jnp.zeros_like(h0), dy))[0]
        _, dx, dw, dv = pull((end_cotangent(g), dy))
        for k in (3, 5, 10):

            def pieces(w, v, k=k, dy=dy):  # w, v traced: closure_convert hoists them
                sizes = {k, T % k} - {0}
                step = lambda h, x, f: run(h, x, f, w, v)
                conv = {s: jax.closure_convert(_sliced(step, s, 0), h0, 0, x, None) for s in sizes}
                got_dx, d_cs = backward_in_pieces(
                    {s: c[0] for s, c in conv.items()},
                    {s: c[1] for s, c in conv.items()},
                    h0,
                    (x, None),
                    dy,
                    end_cotangent,
                    k,
                )
                dw, dv = jnp.zeros_like(w), jnp.zeros_like(v)
                for s, (_, consts) in conv.items():
                    assert len(consts) == 2
                    for c, d in zip(consts, d_cs[s], strict=True):
                        dw, dv = (dw + d, dv) if c is w else (dw, dv + d)
                return got_dx, dw, dv

            for got, want in zip(jax.jit(pieces)(w, v), (dx, dw, dv), strict=True):
                assert_close(got, want, f"k={k} d_out={d_out}")

    # Batch-major, ∂y like x.
    v = jnp.asarray(inputs((N,), seed=3))
    dy = jnp.asarray(inputs((T, B, N), seed=4))
    _, pull = jax.vjp(lambda h, x: run(h, x, None, w, v), h0, x)
    dx = pull((end_cotangent(pull((jnp.zeros_like(h0), dy))[0]), dy))[1]

    def run_bm(h, x, f):
        h, y = run(h, jnp.swapaxes(x, 0, 1), f, w, v)
        return h, jnp.swapaxes(y, 0, 1)

    xb, dyb = jnp.swapaxes(x, 0, 1), jnp.swapaxes(dy, 0, 1)
    converted = {s: jax.closure_convert(_sliced(run_bm, s, 1), h0, 0, xb, None) for s in (4, 2)}
    got_dx, _ = backward_in_pieces(
        {s: c[0] for s, c in converted.items()},
        {s: c[1] for s, c in converted.items()},
        h0,
        (xb, None),
        dyb,
        end_cotangent,
        4,
        time_axis=1,
    )
    assert_close(jnp.swapaxes(got_dx, 0, 1), dx)


@pytest.mark.parametrize("name", ["lru", "gru"])
def test_remat_chunk_bounds_the_backward_memory(name: str) -> None:
    """XLA's memory analysis of forward + backward: with chunks of 32 steps, the temporary
    buffers of a 4096-step sequence are several times smaller (roughly by the chunk length, up
    to arrays as large as the inputs and outputs)."""
    layer_kw = dict(hidden_size=64)
    x = jax.ShapeDtypeStruct((1, 4096, 4), jnp.float32)
    init = lambda: rz.make_layer(name, **layer_kw).init(jax.random.key(0), jnp.zeros(x.shape))
    v = jax.eval_shape(init)

    def temp_bytes(chunk: int | None) -> int:
        layer = rz.make_layer(name, remat_chunk=chunk, **layer_kw)
        loss = lambda v, x: jnp.sum(layer.apply(v, x))
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return grad.lower(v, x).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(32) * 8 < temp_bytes(None)


@pytest.mark.parametrize("name", ["rnn", "ln_rnn", "gru", "lstm"])
def test_nonlinear_layers_refuse_sequence_axis(name: str) -> None:
    with pytest.raises(ValueError, match="only linear recurrences"):
        rz.make_layer(name, hidden_size=4, sequence_axis="seq")
    rz.make_layer(name, hidden_size=4, remat_chunk=8)  # every layer takes remat_chunk


def test_bad_remat_chunk_and_sequence_axis_are_refused() -> None:
    with pytest.raises(ValueError, match="remat_chunk"):
        rz.LRU(hidden_size=4, remat_chunk=0)
    with pytest.raises(TypeError, match="sequence_axis"):
        rz.LRU(hidden_size=4, sequence_axis=0)


def test_sequence_axis_outside_shard_map_runs_unsharded() -> None:
    """Where no map binds the axis (init, or a call on the whole sequence) the layer runs as one
    shard: the unsharded numbers."""
    x = jnp.asarray(inputs((B, T, D)))
    plain = rz.LRU(hidden_size=4)
    v = plain.init(jax.random.key(0), x)
    v_axis = rz.LRU(hidden_size=4, sequence_axis="seq").init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, v_axis, v)
    got = rz.LRU(hidden_size=4, sequence_axis="seq").apply(v, x, lengths=LENGTHS, reverse=True)
    np.testing.assert_array_equal(got, plain.apply(v, x, lengths=LENGTHS, reverse=True))


def test_sharded_equals_unsharded_on_four_devices() -> None:
    """``sharded_checks.py`` in a process with 4 host CPU devices: outputs, final state and
    gradients of the sharded call equal the unsharded call's for crnn, lru and mh_linear (see
    its docstring for the cases)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(rz.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    script = Path(__file__).with_name("sharded_checks.py")
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == 9, done.stdout  # 8 linen configurations and the NNX LRU


def test_nnx_lru_with_remat_chunk_equals_without() -> None:
    """The NNX twin holds the linen layer as its settings, so ``remat_chunk`` reaches the scan:
    outputs, final state and gradients w.r.t. its parameters and x as without it."""
    from flax import nnx

    x = jnp.asarray(inputs((B, T, D)))
    plain = rz.nnx.LRU(D, 4, rngs=nnx.Rngs(0))
    chunked = rz.nnx.LRU(D, 4, rngs=nnx.Rngs(0), remat_chunk=3)
    assert chunked.remat_chunk == 3

    def results(module):
        graph, params = nnx.split(module)

        def call(params, x):
            return nnx.merge(graph, params)(x, lengths=LENGTHS, resets=RESETS, return_state=True)

        def loss(params, x):
            h, y = call(params, x)
            return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.abs(h) ** 2)

        # The chunks are checkpointed: the program holds jax.checkpoint (remat) when chunked.
        remat = "remat" in str(jax.make_jaxpr(call)(params, x))
        return call(params, x), jax.grad(loss, argnums=(0, 1))(params, x), remat

    want, got = results(plain), results(chunked)
    assert (want[2], got[2]) == (False, True)
    want, got = want[:2], got[:2]
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat_want, jax.tree.leaves(got), strict=True):
        assert_close(g, w, jax.tree_util.keystr(path))
