"""Sequence parallelism on 4 host CPU devices: sharded = unsharded, for the linear layers.

Run as a script (``python tests/sharded_checks.py``): it asks XLA for 4 host devices before
importing jax, so it runs in a process of its own (``test_long_sequences`` starts one). Each
check prints one line; any mismatch raises, and the script exits non-zero.

For ``crnn``, ``lru`` and ``mh_linear`` (one head and several; every scan strategy), time is
sharded over a mesh axis of 4 devices inside ``jax.shard_map`` and compared with the unsharded
call on the same global arrays: outputs, the final state, and the gradients w.r.t. the
parameters, x and the initial state, with resets (one at a chunk boundary), lengths (one
sequence ending inside the second chunk, one empty, one full), ``reverse`` and
``initial_state``, and with ``remat_chunk`` composed on top; and the NNX twin of the LRU, which
takes ``sequence_axis`` through the linen layer it holds as its settings.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import recurrent_zoo as rz

AXIS = "seq"
SHARDS = 4
B, T, D, N = 3, 16, 3, 4  # chunks of 4 steps
TOL = dict(rtol=2e-4, atol=2e-5)

# (name, options, remat_chunk): every linear layer, through each of its kernels on the CPU
# (lru: the complex split scan or the associative one; mh_linear: one head, the matmul-cell
# scan; several, the block scan), and remat composed with two of them.
CONFIGS = [
    ("lru", {}, None),
    ("lru", {}, 3),
    ("lru", {"scan": "associative"}, None),
    ("crnn", {"normalize": True, "out_features": 5}, None),
    ("mh_linear", {}, None),
    ("mh_linear", {}, 3),
    ("mh_linear", {"num_heads": 2}, None),
    ("mh_linear", {"num_heads": 2, "scan": "associative"}, None),
]


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    resets = np.zeros((B, T), bool)
    resets[0, [4, 9]] = True  # one on the boundary of chunks 0 and 1, one inside chunk 2
    resets[1, 5] = True  # inside chunk 1; beyond this sequence's length: ignored
    resets[2, 12] = True  # the first step of the last chunk (reverse shifts it across devices)
    lengths = np.array([T, 5, 14], np.int32)
    return x, resets, lengths


# Tiny programs: XLA's backend optimisations would cost more than they buy (as in harness.py).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _functions(layer, mesh):
    """(unsharded, sharded) functions of (variables, x, h0, resets, lengths, reverse)."""

    def call(v, x, h0, resets, lengths, reverse):
        return layer.apply(
            v,
            x,
            initial_state=h0,
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=True,
        )

    def sharded(v, x, h0, resets, lengths, reverse):
        f = jax.shard_map(
            lambda v, x, h0, r, n: call(v, x, h0, r, n, reverse),
            mesh=mesh,
            in_specs=(P(), P(None, AXIS), P(), P(None, AXIS), P()),
            out_specs=(P(), P(None, AXIS)),
        )
        return f(v, x, h0, resets, lengths)

    return call, sharded


def _results(run):
    """``(state, y)`` in both directions, and the gradients of a loss of both w.r.t. the
    variables, x and the initial state."""

    def loss(v, x, h0, resets, lengths):
        total = 0.0
        for reverse in (False, True):
            h, y = run(v, x, h0, resets, lengths, reverse)
            w = jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) + reverse)
            total = total + jnp.sum(w * y) + jnp.sum(jnp.abs(h) ** 2)
        return total

    def f(*args):
        return {
            "forward": run(*args, False),
            "reverse": run(*args, True),
            "gradient": jax.grad(loss, argnums=(0, 1, 2))(*args),
        }

    return f


def check(name: str, options: dict, remat: int | None, mesh: Mesh) -> None:
    x, resets, lengths = _inputs()
    base = rz.make_layer(name, hidden_size=N, **options)
    v = base.init(jax.random.key(0), x)
    rng = np.random.default_rng(1)
    h0 = jnp.asarray(rng.normal(size=(B, N)), base.state_dtype)
    if jnp.issubdtype(base.state_dtype, jnp.complexfloating):
        h0 = h0 + 1j * jnp.asarray(rng.normal(size=(B, N)), base.state_dtype)
    layer = rz.make_layer(name, hidden_size=N, sequence_axis=AXIS, remat_chunk=remat, **options)
    call, sharded = _functions(layer, mesh)
    both = lambda *args: (_results(call)(*args), _results(sharded)(*args))
    want, got = jax.jit(both, compiler_options=FAST_COMPILE)(v, x, h0, resets, lengths)
    what = f"{name} {options} remat_chunk={remat}"
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat_want, jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, w, err_msg=f"{what}: {jax.tree_util.keystr(path)}", **TOL)
    print("ok", what, flush=True)


def check_nnx(mesh: Mesh) -> None:
    """``rz.nnx.LRU(sequence_axis=...)`` under shard_map (its state split off by ``nnx.split``)
    equals the unsharded twin: outputs, final state, and gradients w.r.t. its parameters and x."""
    from flax import nnx

    x, resets, lengths = _inputs()
    plain = rz.nnx.LRU(D, N, rngs=nnx.Rngs(0))
    layer = rz.nnx.LRU(D, N, rngs=nnx.Rngs(0), sequence_axis=AXIS)
    graph, params = nnx.split(layer)

    def call(params, x, r, n):
        module = nnx.merge(graph, params)
        return module(x, resets=r, lengths=n, return_state=True)

    sharded = jax.shard_map(
        call,
        mesh=mesh,
        in_specs=(P(), P(None, AXIS), P(None, AXIS), P()),
        out_specs=(P(), P(None, AXIS)),
    )
    unsharded = lambda params, x, r, n: nnx.merge(nnx.graphdef(plain), params)(
        x, resets=r, lengths=n, return_state=True
    )

    def results(f):
        def loss(params, x):
            h, y = f(params, x, resets, lengths)
            w = jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))
            return jnp.sum(w * y) + jnp.sum(jnp.abs(h) ** 2)

        return lambda params, x: (f(params, x, resets, lengths), jax.grad(loss, (0, 1))(params, x))

    both = lambda params, x: (results(unsharded)(params, x), results(sharded)(params, x))
    want, got = jax.jit(both, compiler_options=FAST_COMPILE)(params, x)
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat_want, jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, w, err_msg=f"nnx lru: {jax.tree_util.keystr(path)}", **TOL)
    print("ok nnx lru sequence_axis", flush=True)


def main() -> int:
    assert jax.device_count() == SHARDS, jax.devices()
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    for name, options, remat in CONFIGS:
        check(name, options, remat, mesh)
    check_nnx(mesh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
